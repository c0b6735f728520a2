"""The experiment's progress line on the terminal (``verbose >= 1``).

Example output::

    == Experiment running: exp | 12.3 s | 8 trials: 4 RUNNING, 4 TERMINATED | best loss=0.12 (f_..._00003)
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Optional

from tunelib.trial import Trial


def best_so_far(trials: Iterable[Trial], metric: Optional[str],
                mode: Optional[str]) -> Optional[Trial]:
    """The trial whose last ``metric`` is best for ``mode`` (NaN and non-numbers skipped)."""
    if not metric or mode not in ("min", "max"):
        return None
    best, best_value = None, None
    for trial in trials:
        value = trial.last_result.get(metric)
        if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
            continue
        if best is None or (value < best_value if mode == "min" else value > best_value):
            best, best_value = trial, value
    return best


def status_counts(trials: Iterable[Trial]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return counts


def progress_line(name: str, trials: list, elapsed_s: float, metric: Optional[str],
                  mode: Optional[str], final: bool = False) -> str:
    parts = ", ".join(f"{n} {s}" for s, n in sorted(status_counts(trials).items()))
    head = "Experiment finished" if final else "Experiment running"
    line = f"== {head}: {name} | {elapsed_s:.1f} s | {len(trials)} trials: {parts}"
    best = best_so_far(trials, metric, mode)
    if best is not None:
        line += f" | best {metric}={best.last_result.get(metric)!r} ({best})"
    return line
