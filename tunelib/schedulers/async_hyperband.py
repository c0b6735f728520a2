"""Asynchronous Successive Halving (ASHA), Ray's rung logic with O(log n) cutoffs."""

from __future__ import annotations

import bisect
import logging
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from tunelib.schedulers import _util
from tunelib.schedulers.trial_scheduler import FIFOScheduler, SchedulerController, TrialScheduler
from tunelib.trial import Trial

logger = logging.getLogger(__name__)


class AsyncHyperBandScheduler(FIFOScheduler):
    """Asynchronous Successive Halving (https://arxiv.org/abs/1810.05934).

    A trial reaching a rung (``grace_period * reduction_factor**k`` units of
    ``time_attr``) is stopped when its score is below the ``1 - 1/reduction_factor``
    percentile of the scores recorded at that rung so far; trials never wait for
    each other. Decisions match Ray's on the same results.

    Args:
        time_attr: Monotonically increasing result key measuring progress.
        metric: Result key to optimise; with ``mode`` it may come from ``TuneConfig``.
        mode: 'min' or 'max'.
        max_t: Trials are stopped at ``max_t`` units of ``time_attr`` (if ``stop_last_trials``).
        grace_period: No trial is stopped before this many units of ``time_attr``.
        reduction_factor: Rung spacing and the fraction (``1/reduction_factor``) kept.
        brackets: Number of brackets (each with a different first rung).
        stop_last_trials: Stop trials reaching ``max_t``; if False they run on and
            are not judged again at rungs they passed.

    Example::

        from tunelib import tune
        from tunelib.schedulers import ASHAScheduler

        asha = ASHAScheduler(metric="loss", mode="min", max_t=100, grace_period=1)
        tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=asha, num_samples=64))
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ):
        name = type(self).__name__
        if not max_t > 0:
            raise ValueError(f"{name}: `max_t` must be > 0, got {max_t!r}.")
        if not grace_period > 0:
            raise ValueError(f"{name}: `grace_period` must be > 0, got {grace_period!r}.")
        if grace_period > max_t:
            raise ValueError(
                f"{name}: `grace_period` ({grace_period!r}) must be <= `max_t` ({max_t!r})."
            )
        if not reduction_factor > 1:
            raise ValueError(f"{name}: `reduction_factor` must be > 1, got {reduction_factor!r}.")
        if not (isinstance(brackets, int) and brackets > 0):
            raise ValueError(f"{name}: `brackets` must be an integer > 0, got {brackets!r}.")
        _util.check_mode(mode, name)
        super().__init__()
        self._reduction_factor = reduction_factor
        self._max_t = max_t
        self._trial_info: Dict[str, _Bracket] = {}
        self._brackets = [
            _Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials=stop_last_trials)
            for s in range(brackets)
        ]
        self._counter = 0
        self._num_stopped = 0
        self._metric = metric
        self._mode = mode
        self._metric_op = _util.metric_op(mode)
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        return _util.set_metric_mode(self, metric, mode)

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        _util.require_metric_mode(self)
        if len(self._brackets) == 1:
            self._trial_info[trial.trial_id] = self._brackets[0]
            return
        # Ray: softmax over the number of rungs picks the bracket.
        sizes = np.array([len(b._rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        idx = np.random.choice(len(self._brackets), p=probs / probs.sum())
        self._trial_info[trial.trial_id] = self._brackets[idx]

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        if not _util.has_keys(type(self).__name__, result, self._time_attr, self._metric):
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[self._time_attr], self._score(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> None:
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is None or self._time_attr not in result or self._metric not in result:
            return
        bracket.on_result(trial, result[self._time_attr], self._score(result))

    def on_trial_remove(self, tune_controller: SchedulerController, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        out = "Using AsyncHyperBand: num_stopped={}".format(self._num_stopped)
        return out + "\n" + "\n".join(b.debug_str() for b in self._brackets)

    def save(self, checkpoint_path: str) -> None:
        _util.pickle_state(self, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        _util.unpickle_state(self, checkpoint_path)

    def _score(self, result: Dict) -> Optional[float]:
        value = result[self._metric]
        return None if value is None else self._metric_op * value


ASHAScheduler = AsyncHyperBandScheduler


class _Rung:
    """One milestone: the scores recorded there, kept sorted (NaNs aside) for cutoffs."""

    __slots__ = ("milestone", "recorded", "_sorted")

    def __init__(self, milestone: float):
        self.milestone = milestone
        self.recorded: Dict[str, float] = {}
        self._sorted: List[float] = []

    def record(self, trial_id: str, score: float) -> None:
        old = self.recorded.get(trial_id)
        if old is not None and not math.isnan(old):
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.recorded[trial_id] = score
        if not math.isnan(score):
            bisect.insort(self._sorted, score)

    def cutoff(self, q: float) -> Optional[float]:
        if not self.recorded:
            return None
        return _util.nanpercentile_sorted(self._sorted, q)


class _Bracket:
    """Rungs of one ASHA bracket, highest milestone first (as Ray keeps them)."""

    def __init__(
        self,
        min_t: float,
        max_t: float,
        reduction_factor: float,
        s: int,
        stop_last_trials: bool = True,
    ):
        self.rf = reduction_factor
        max_rungs = int(np.log(max_t / min_t) / np.log(self.rf) - s + 1)
        self._rungs: List[_Rung] = [
            _Rung(min_t * self.rf ** (k + s)) for k in reversed(range(max_rungs))
        ]
        self._q = (1 - 1 / self.rf) * 100
        self._stop_last_trials = stop_last_trials

    def cutoff(self, rung: _Rung) -> Optional[float]:
        return rung.cutoff(self._q)

    def on_result(self, trial: Trial, cur_iter: float, cur_rew: Optional[float]) -> str:
        action = TrialScheduler.CONTINUE
        trial_id = trial.trial_id
        for rung in self._rungs:
            recorded = rung.recorded
            if cur_iter >= rung.milestone and trial_id in recorded and not self._stop_last_trials:
                break
            if cur_iter < rung.milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(rung)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            if cur_rew is None:
                logger.warning("Reward attribute is None! Consider reporting a different field.")
            else:
                rung.record(trial_id, cur_rew)
            break
        return action

    def rungs(self) -> List[Tuple[float, Dict[str, float]]]:
        """(milestone, {trial_id: score}) per rung, highest milestone first."""
        return [(r.milestone, dict(r.recorded)) for r in self._rungs]

    def debug_str(self) -> str:
        iters = " | ".join(
            "Iter {:.3f}: {}".format(r.milestone, self.cutoff(r)) for r in self._rungs
        )
        return "Bracket: " + iters
