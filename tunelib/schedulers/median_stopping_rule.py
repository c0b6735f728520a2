"""The median stopping rule (Google Vizier), with vectorised running means."""

from __future__ import annotations

import bisect
import logging
import math
from typing import Dict, List, Optional

import numpy as np

from tunelib.schedulers import _util
from tunelib.schedulers.trial_scheduler import FIFOScheduler, SchedulerController, TrialScheduler
from tunelib.trial import PAUSED, PENDING, Trial

logger = logging.getLogger(__name__)


class MedianStoppingRule(FIFOScheduler):
    """Stop a trial whose best result is worse than the median of the others' running means.

    At time ``t`` (in units of ``time_attr``, once ``t >= grace_period``) a trial is
    stopped when its best ``metric`` so far is strictly worse than the median, over
    the other trials that have reached ``t``, of their mean ``metric`` between
    ``grace_period`` and ``t``. As in Ray (https://research.google.com/pubs/pub46180.html).

    Args:
        time_attr: Monotonically increasing result key measuring progress.
        metric: Result key to optimise; with ``mode`` it may come from ``TuneConfig``.
        mode: 'min' or 'max'.
        grace_period: Only stop trials at least this old; the running means start here.
        min_samples_required: Minimum number of other trials to take the median over.
        min_time_slice: With too few samples, a trial yields (PAUSE) to waiting trials
            at most once per this many units of ``time_attr``.
        hard_stop: If False, PAUSE instead of STOP; paused trials resume FIFO later.

    Example::

        MedianStoppingRule(time_attr="training_iteration", metric="loss", mode="min",
                           grace_period=5)
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: int = 0,
        hard_stop: bool = True,
    ):
        _util.check_mode(mode, type(self).__name__)
        super().__init__()
        self._stopped_trials: set = set()
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._metric = metric
        self._mode = mode
        self._metric_op = _util.metric_op(mode)
        self._time_attr = time_attr
        self._hard_stop = hard_stop
        self._last_pause: Dict[Trial, float] = {}
        self._table = _RunningMeans(grace_period)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        return _util.set_metric_mode(self, metric, mode)

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        _util.require_metric_mode(self)

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        if not _util.has_keys(type(self).__name__, result, self._time_attr, self._metric):
            return TrialScheduler.CONTINUE
        if trial in self._stopped_trials:
            return TrialScheduler.CONTINUE  # soft-stopped trials fall back to FIFO
        time = result[self._time_attr]
        self._record(trial, result)
        if time < self._grace_period:
            return TrialScheduler.CONTINUE
        best = self._table.best[self._table.rows[trial]]
        median = self._table.median_of_others(
            trial, time, self._min_samples_required, best, self._mode
        )
        if median is None:
            action = self._on_insufficient_samples(tune_controller, trial, time)
            if action == TrialScheduler.PAUSE:
                self._last_pause[trial] = time
            return action
        compare = max if self._mode == "max" else min
        if compare(median, best) != best:
            logger.debug("MedianStoppingRule: early stopping %s", trial)
            self._stopped_trials.add(trial)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> None:
        if self._time_attr in result and self._metric in result:
            self._record(trial, result)

    def debug_string(self) -> str:
        return "Using MedianStoppingRule: num_stopped={}.".format(len(self._stopped_trials))

    def _record(self, trial: Trial, result: Dict) -> None:
        self._table.append(trial, float(result[self._time_attr]), result[self._metric], self._mode)

    def _on_insufficient_samples(
        self, tune_controller: SchedulerController, trial: Trial, time: float
    ) -> str:
        pause = time - self._last_pause.get(trial, -math.inf) > self._min_time_slice
        pause = pause and any(
            t.status in (PENDING, PAUSED) for t in tune_controller.get_live_trials()
        )
        return TrialScheduler.PAUSE if pause else TrialScheduler.CONTINUE


class _RunningMeans:
    """Every trial's (time, metric) history, laid out so one query costs a few numpy ops.

    Row ``j`` holds trial j's results sorted by time (padded with +inf). ``csum[j, k]``
    is the sum of its first ``k`` metrics, counting only results at or after
    ``grace_period`` — those before it form a prefix of length ``below[j]`` — so
    the mean over the window ``[grace_period, t]`` is ``csum[j, count] / (count - below)``.
    ``col_min`` (non-decreasing) and ``col_max_prefix`` bound the band of columns
    where rows disagree about ``<= t``; only that band is scanned.
    """

    def __init__(self, grace_period: float):
        self.grace = grace_period
        self.rows: Dict[Trial, int] = {}
        self.trials: List[Trial] = []
        self.best: List[float] = []
        self._values: List[List[float]] = []  # per row, metric in time order (exact fallback)
        cap_r, cap_c = 16, 16
        self.times = np.full((cap_r, cap_c), np.inf)
        self.csum = np.zeros((cap_r, cap_c + 1))
        self.length = np.zeros(cap_r, dtype=np.int64)
        self.below = np.zeros(cap_r, dtype=np.int64)
        self.last_time = np.full(cap_r, -np.inf)
        self.col_min = np.full(cap_c, np.inf)
        self.col_max_prefix = np.full(cap_c, -np.inf)
        self.ncols = 0
        self.max_abs = 0.0

    def _grow(self, need_rows: int, need_cols: int) -> None:
        r, c = self.times.shape
        nr = r if need_rows <= r else max(2 * r, need_rows)
        nc = c if need_cols <= c else max(2 * c, need_cols)
        if (nr, nc) == (r, c):
            return
        times = np.full((nr, nc), np.inf)
        times[:r, :c] = self.times
        csum = np.zeros((nr, nc + 1))
        csum[:r, : c + 1] = self.csum
        self.times, self.csum = times, csum
        for name, fill in (("length", 0), ("below", 0), ("last_time", -np.inf)):
            old = getattr(self, name)
            new = np.full(nr, fill, dtype=old.dtype)
            new[:r] = old
            setattr(self, name, new)
        for name, fill in (("col_min", np.inf), ("col_max_prefix", -np.inf)):
            old = getattr(self, name)
            new = np.full(nc, fill)
            new[:c] = old
            setattr(self, name, new)

    def append(self, trial: Trial, t: float, value: float, mode: Optional[str]) -> None:
        row = self.rows.get(trial)
        if row is None:
            row = self.rows[trial] = len(self.trials)
            self.trials.append(trial)
            self.best.append(value)
            self._values.append([])
        elif (value > self.best[row]) if mode == "max" else (value < self.best[row]):
            self.best[row] = value  # same tie/NaN behaviour as Python's min()/max() over a list
        self._grow(row + 1, 1)
        c = int(self.length[row])
        self._grow(row + 1, c + 1)
        v = float(value)
        if math.isfinite(v):
            self.max_abs = max(self.max_abs, abs(v))
        self.last_time[row] = t
        if c and t < self.times[row, c - 1]:
            self._insert_out_of_order(row, t, v)
            return
        self._values[row].append(v)
        self.times[row, c] = t
        self.csum[row, c + 1] = self.csum[row, c] + (v if t >= self.grace else 0.0)
        self.length[row] = c + 1
        if t < self.grace:
            self.below[row] += 1
        if c == self.ncols:
            self.ncols += 1
            self.col_max_prefix[c] = self.col_max_prefix[c - 1] if c else -np.inf
        self.col_min[c] = min(self.col_min[c], t)
        np.maximum(self.col_max_prefix[c : self.ncols], t, out=self.col_max_prefix[c : self.ncols])

    def _insert_out_of_order(self, row: int, t: float, v: float) -> None:
        # A restored trial re-reporting earlier times: rebuild its row and the column bounds.
        n = int(self.length[row])
        k = bisect.bisect_right(self.times[row, :n].tolist(), t)
        self._values[row].insert(k, v)
        times = np.insert(self.times[row, :n], k, t)
        self.length[row] = n + 1
        self._grow(row + 1, n + 1)
        self.times[row, : n + 1] = times
        vals = np.asarray(self._values[row])
        mask = times >= self.grace
        self.below[row] = int((~mask).sum())
        self.csum[row, 1 : n + 2] = np.cumsum(np.where(mask, vals, 0.0))
        self.ncols = max(self.ncols, n + 1)
        live = self.times[: len(self.trials), : self.ncols]
        self.col_min[: self.ncols] = live.min(axis=0)
        filled = np.where(np.isinf(live), -np.inf, live)
        self.col_max_prefix[: self.ncols] = np.maximum.accumulate(filled.max(axis=0))

    def median_of_others(
        self, trial: Trial, t: float, min_samples: int, best: float, mode: Optional[str]
    ) -> Optional[float]:
        """Median running mean at ``t`` of the other trials that reached ``t``; None if too few."""
        n = len(self.trials)
        me = self.rows[trial]
        mask = self.last_time[:n] >= t
        mask[me] = False
        rows = np.flatnonzero(mask)
        if len(rows) < min_samples:
            return None
        lo = int(np.searchsorted(self.col_max_prefix[: self.ncols], t, side="right"))
        hi = int(np.searchsorted(self.col_min[: self.ncols], t, side="right"))
        counts = np.minimum(self.length[rows], lo)
        if hi > lo:
            counts += (self.times[rows, lo:hi] <= t).sum(axis=1)
        num = counts - self.below[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(num > 0, self.csum[rows, counts] / np.maximum(num, 1), np.nan)
        means = means[np.isfinite(means)]
        if len(means) < min_samples:
            return None
        median = np.median(means)
        # Prefix sums round differently from np.mean over long windows; when the verdict
        # hinges on that rounding, recompute Ray's way so decisions stay identical.
        tol = 1e-9 * max(1.0, self.max_abs)
        if abs(median - best) <= tol:
            median = self._exact_median(rows, counts, min_samples)
        return median

    def _exact_median(self, rows: np.ndarray, counts: np.ndarray, min_samples: int):
        means = []
        for j, c in zip(rows.tolist(), counts.tolist()):
            window = self._values[j][int(self.below[j]) : c]
            m = np.mean(window) if window else np.nan
            if np.isfinite(m):
                means.append(m)
        return np.median(means) if len(means) >= min_samples else None
