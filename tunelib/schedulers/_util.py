"""Pieces shared by the schedulers: argument checks, metric/mode plumbing, result keys."""

from __future__ import annotations

import math
import os
import pickle
from typing import Any, Dict, Iterable, List, Optional, Sequence

from tunelib.schedulers.trial_scheduler import DEFAULT_METRIC

MODES = ("min", "max")

# Keys the trainable wrapper fills in by itself (Ray's AUTO_RESULT_KEYS + DEBUG_METRICS and
# friends). A result carrying nothing else (e.g. the final result of a function that returned)
# is not the user's report, so a missing metric there is not an error; Ray skips it too.
AUTO_KEYS = frozenset(
    {
        "done",
        "trial_id",
        "experiment_id",
        "date",
        "timestamp",
        "pid",
        "hostname",
        "node_ip",
        "config",
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "time_since_restore",
        "timesteps_total",
        "timesteps_this_iter",
        "timesteps_since_restore",
        "episodes_total",
        "episodes_this_iter",
        "iterations_since_restore",
        "checkpoint_dir_name",
        "should_checkpoint",
        "warmup_time",
        "experiment_tag",
    }
)


def check_mode(mode: Optional[str], owner: str) -> None:
    """Raise ValueError unless ``mode`` is None, 'min' or 'max'."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"{owner}: `mode` must be 'min' or 'max', got {mode!r}.")


def set_metric_mode(sched: Any, metric: Optional[str], mode: Optional[str]) -> bool:
    """Ray's ``set_search_properties`` for schedulers with a metric and a mode.

    Works on ``sched._metric``, ``sched._mode`` and ``sched._metric_op`` (+1 for max,
    -1 for min, so that bigger is always better).
    """
    if sched._metric and metric:
        return False
    if sched._mode and mode:
        return False
    check_mode(mode, type(sched).__name__)
    if metric:
        sched._metric = metric
    if mode:
        sched._mode = mode
    sched._metric_op = metric_op(sched._mode)
    if sched._metric is None and sched._mode:
        sched._metric = DEFAULT_METRIC
    return True


def metric_op(mode: Optional[str]) -> Optional[float]:
    """+1.0 for 'max', -1.0 for 'min', None when unknown."""
    return {"max": 1.0, "min": -1.0}.get(mode) if mode else None


def require_metric_mode(sched: Any) -> None:
    """Raise ValueError when a trial is added before ``metric`` and ``mode`` are known."""
    if not sched._metric or not sched._mode:
        raise ValueError(
            f"{type(sched).__name__} has been instantiated without a valid `metric` "
            f"({sched._metric!r}) or `mode` ({sched._mode!r}) parameter. Either pass these "
            "parameters when instantiating the scheduler, or pass them as parameters to "
            "`tune.TuneConfig()`; `mode` must be 'min' or 'max'."
        )


def has_keys(owner: str, result: Dict, time_attr: str, metric: str, strict: bool = False) -> bool:
    """True when ``result`` carries both ``time_attr`` and ``metric``.

    False (skip the result, as Ray does) when the result is bare — only keys the
    wrapper fills in — or when only the anonymous default metric is missing, or when
    ``TUNE_DISABLE_STRICT_METRIC_CHECKING=1`` (Ray's switch; ignored when ``strict``).
    Otherwise a key the trainable does not report is a user error: ValueError naming it.
    """
    if time_attr in result and metric in result:
        return True
    if all(k in AUTO_KEYS for k in result):
        return False
    if not strict and os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0") == "1":
        return False
    for name, key in (("time_attr", time_attr), ("metric", metric)):
        if key not in result:
            if key == DEFAULT_METRIC:
                return False
            raise ValueError(
                f"{owner}: the trial reported a result without `{key}` (the scheduler's "
                f"`{name}`). Reported keys: {sorted(map(str, result))}. Report `{key}` with "
                f"tune.report(), or set `{name}` to one of the reported keys."
            )
    return True  # pragma: no cover


def nanpercentile_sorted(values: Sequence[float], q: float) -> float:
    """``np.nanpercentile(values, q)`` (linear method) for already sorted, NaN-free values.

    Bit-for-bit the same arithmetic as numpy, in O(1), so ASHA's cutoffs match Ray's.
    Returns NaN for an empty sequence (numpy's all-NaN answer).
    """
    n = len(values)
    if n == 0:
        return math.nan
    virtual = (n - 1) * (q / 100.0)
    if virtual >= n - 1:
        # numpy's above-bounds branch: lerp(last, last, virtual + 1), NaN for an infinite last.
        prev, nxt, gamma = n - 1, n - 1, virtual + 1
    else:
        prev = max(math.floor(virtual), 0)
        nxt, gamma = prev + 1, virtual - prev
    a = float(values[prev])
    b = float(values[nxt])
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


def pickle_state(obj: Any, checkpoint_path: str) -> None:
    """Write ``obj.__dict__`` to ``checkpoint_path`` (Ray's scheduler ``save``)."""
    with open(checkpoint_path, "wb") as f:
        pickle.dump(obj.__dict__, f)


def unpickle_state(obj: Any, checkpoint_path: str) -> None:
    """Read back what :func:`pickle_state` wrote into ``obj`` (Ray's scheduler ``restore``)."""
    with open(checkpoint_path, "rb") as f:
        obj.__dict__.update(pickle.load(f))


def live(trials: Iterable[Any], statuses: Sequence[str]) -> List[Any]:
    """The trials whose status is one of ``statuses``."""
    return [t for t in trials if t.status in statuses]
