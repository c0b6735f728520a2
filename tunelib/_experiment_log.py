"""The experiment's own log lines in Prefect: progress while it runs, a summary at the end.

A callback (Ray's hooks) that hands lines to the recorder's ``experiment_log``, which
writes them, batched, as the experiment flow run's logs. What the terminal shows (the
reporters, ``verbose``) is unchanged; this is what a Prefect user sees on the run's page.

Example::

    callbacks.append(ExperimentLog(recorder, metric="loss", mode="min"))
"""

from __future__ import annotations

import logging
import time
from typing import Any, List, Optional

from tunelib._callbacks import Callback
from tunelib._status_table import status_counts

# a progress line at most this often (Ray's CLIReporter prints every 5 s on a terminal;
# a log keeps a coarser rhythm)
PROGRESS_PERIOD_S = 10.0


class ExperimentLog(Callback):
    """Progress lines every ``period`` seconds, one per trial error, and the summary."""

    def __init__(self, recorder: Any, metric: Optional[str] = None,
                 mode: Optional[str] = None, period: float = PROGRESS_PERIOD_S):
        self.recorder = recorder
        self.metric, self.mode = metric, mode
        self.period = period
        self._next = time.monotonic() + period
        self._total: Optional[int] = None

    def setup(self, total_num_samples: Optional[int] = None, **info) -> None:
        self._total = total_num_samples

    def on_step_end(self, iteration: int, trials: List[Any], **info) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.period
            self.recorder.experiment_log(logging.INFO, self._progress(trials))

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info) -> None:
        first = (getattr(trial, "error_msg", None) or "").strip().splitlines()
        self.recorder.experiment_log(
            logging.ERROR, f"Trial {trial} errored: {first[-1] if first else 'see its run'}")

    def on_experiment_end(self, trials: List[Any], **info) -> None:
        self.recorder.experiment_log(logging.INFO, "Experiment finished. "
                                     + self._progress(trials))

    # ------------------------------------------------------------------ texts
    def _progress(self, trials: List[Any]) -> str:
        counts = status_counts(trials)
        finished = sum(1 for t in trials if t.is_finished())
        total = self._total if isinstance(self._total, int) and self._total > 0 else len(trials)
        text = (f"{finished}/{total} trials finished ("
                + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")")
        best = self._best(trials)
        return text + (f"; best {self.metric}={best[1]:.6g} ({best[0]})" if best else "")

    def _best(self, trials: List[Any]):
        if not self.metric or self.mode not in ("min", "max"):
            return None
        scored = [(str(t), t.last_result[self.metric]) for t in trials
                  if isinstance((t.last_result or {}).get(self.metric), (int, float))]
        if not scored:
            return None
        pick = min if self.mode == "min" else max
        return pick(scored, key=lambda pair: pair[1])
