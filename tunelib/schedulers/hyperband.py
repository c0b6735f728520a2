"""Synchronous HyperBand: trials pause at rung boundaries until their bracket is halved."""

from __future__ import annotations

import collections
import logging
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from tunelib.error import TuneError
from tunelib.schedulers import _util
from tunelib.schedulers.trial_scheduler import FIFOScheduler, SchedulerController, TrialScheduler
from tunelib.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial

logger = logging.getLogger(__name__)

# Levels, as in Ray: a *band* is one HyperBand iteration holding up to ``s_max + 1``
# *brackets*; a bracket holds up to ``n(s)`` trials that are successively reduced by
# ``eta``. New trials fill the newest bracket, spilling into new brackets and bands.


def _is_saving(trial: Trial) -> bool:
    return bool(getattr(trial, "is_saving", False))


class HyperBandScheduler(FIFOScheduler):
    """HyperBand early stopping (synchronous successive halving in several brackets).

    A trial that reaches its bracket's milestone is PAUSED until every live trial of
    the bracket has reached it; then the best ``1/reduction_factor`` continue (the
    controller restarts them through :meth:`choose_trial_to_run`) and the others are
    stopped. Semantics and bracket sizes follow Ray's ``HyperBandScheduler``.

    Args:
        time_attr: Monotonically increasing result key measuring progress.
        metric: Result key to optimise; with ``mode`` it may come from ``TuneConfig``.
        mode: 'min' or 'max'.
        max_t: Trials are stopped after ``max_t`` units of ``time_attr``.
        reduction_factor: HyperBand's ``eta``.
        stop_last_trials: Stop the trials left when a bracket reaches ``max_t``.

    Example::

        HyperBandScheduler(metric="loss", mode="min", max_t=81, reduction_factor=3)
    """

    _supports_buffered_results = False

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: int = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ):
        name = type(self).__name__
        if not max_t > 0:
            raise ValueError(f"{name}: `max_t` must be > 0, got {max_t!r}.")
        if not reduction_factor > 1:
            raise ValueError(f"{name}: `reduction_factor` must be > 1, got {reduction_factor!r}.")
        _util.check_mode(mode, name)
        super().__init__()
        self._eta = reduction_factor
        self._s_max_1 = int(np.round(np.log(max_t) / np.log(reduction_factor))) + 1
        self._max_t_attr = max_t
        self._hyperbands: List[List[Optional[_Bracket]]] = [[]]
        self._trial_info: Dict[Trial, Tuple[_Bracket, int]] = {}
        self._state = {"bracket": None, "band_idx": 0}
        self._num_stopped = 0
        self._metric = metric
        self._mode = mode
        self._metric_op = _util.metric_op(mode)
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def _get_n0(self, s: int) -> int:
        return int(np.ceil(self._s_max_1 / (s + 1) * self._eta**s))

    def _get_r0(self, s: int) -> int:
        return int(self._max_t_attr * self._eta ** (-s))

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        return _util.set_metric_mode(self, metric, mode)

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Put the trial in the newest bracket, opening a new bracket or band when full."""
        _util.require_metric_mode(self)
        cur_bracket = self._state["bracket"]
        cur_band = self._hyperbands[self._state["band_idx"]]
        if cur_bracket is None or cur_bracket.filled():
            retry = True
            while retry:
                if self._cur_band_filled():
                    cur_band = []
                    self._hyperbands.append(cur_band)
                    self._state["band_idx"] += 1
                s = len(cur_band)
                if self._get_r0(s) == 0:
                    logger.info("Bracket too small - Retrying...")
                    cur_bracket = None
                else:
                    retry = False
                    cur_bracket = self._create_bracket(s)
                cur_band.append(cur_bracket)
                self._state["bracket"] = cur_bracket
        self._state["bracket"].add_trial(trial)
        self._trial_info[trial] = cur_bracket, self._state["band_idx"]

    def _create_bracket(self, s: int) -> "_Bracket":
        return _Bracket(
            time_attr=self._time_attr,
            max_trials=self._get_n0(s),
            init_t_attr=self._get_r0(s),
            max_t_attr=self._max_t_attr,
            eta=self._eta,
            s=s,
            stop_last_trials=self._stop_last_trials,
        )

    def _cur_band_filled(self) -> bool:
        return len(self._hyperbands[self._state["band_idx"]]) == self._s_max_1

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        """CONTINUE below the milestone; at it, PAUSE (or halve the bracket if last in)."""
        if not _util.has_keys(type(self).__name__, result, self._time_attr, self._metric):
            return TrialScheduler.CONTINUE
        bracket, _ = self._trial_info[trial]
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        return self._process_bracket(tune_controller, bracket)

    def _process_bracket(self, tune_controller: SchedulerController, bracket: "_Bracket") -> str:
        """Halve the bracket once every live trial reached the milestone; else PAUSE.

        At that point at most one trial (the one reporting) is RUNNING; the others are
        PAUSED or already gone.
        """
        action = TrialScheduler.PAUSE
        if bracket.cur_iter_done():
            if bracket.finished():
                bracket.cleanup_full(tune_controller)
                return TrialScheduler.STOP
            bracket.is_being_processed = True
            good, bad = bracket.successive_halving(self._metric, self._metric_op)
            self._num_stopped += len(bad)
            for t in bad:
                if t.status == PAUSED or _is_saving(t):
                    tune_controller.stop_trial(t)
                elif t.status == RUNNING:
                    bracket.cleanup_trial(t)
                    action = TrialScheduler.STOP
                else:
                    raise TuneError(
                        f"Trial with unexpected bad status encountered: {t} is {t.status}"
                    )
            for t in good:
                if bracket.continue_trial(t):
                    if t.status in (ERROR, TERMINATED):
                        raise TuneError(
                            f"Good trial {t.trial_id} is in an invalid state: {t.status}"
                        )
                    if t.status == PAUSED or _is_saving(t):
                        bracket.trials_to_unpause.add(t)
                    elif t.status == RUNNING:
                        action = TrialScheduler.CONTINUE
                elif bracket.finished() and bracket.stop_last_trials:
                    if t.status == PAUSED or _is_saving(t):
                        tune_controller.stop_trial(t)
                    elif t.status == RUNNING:
                        bracket.cleanup_trial(t)
                        action = TrialScheduler.STOP
        return action

    def on_trial_remove(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Drop the trial from its bracket; halve the bracket if it was the last one waited for."""
        info = self._trial_info.get(trial)
        if info is None:
            return
        bracket, _ = info
        bracket.cleanup_trial(trial)
        if not bracket.finished() and not bracket.is_being_processed:
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: SchedulerController, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: SchedulerController) -> Optional[Trial]:
        """A PENDING trial, or a PAUSED one promoted by halving, least complete bracket first."""
        for band in self._hyperbands:
            scrubbed = [b for b in band if b is not None]
            for bracket in sorted(scrubbed, key=lambda b: b.completion_percentage()):
                for trial in bracket.current_trials():
                    if (
                        trial.status == PAUSED and trial in bracket.trials_to_unpause
                    ) or trial.status == PENDING:
                        return trial
        return None

    def debug_string(self) -> str:
        out = "Using HyperBand: num_stopped={} total_brackets={}".format(
            self._num_stopped, sum(len(band) for band in self._hyperbands)
        )
        for i, band in enumerate(self._hyperbands):
            out += "\nRound #{}:".format(i)
            for bracket in band:
                if bracket:
                    out += "\n  {}".format(bracket)
        return out

    def state(self) -> Dict[str, int]:
        """Number of brackets and of stopped trials."""
        return {
            "num_brackets": sum(len(band) for band in self._hyperbands),
            "num_stopped": self._num_stopped,
        }


class _Bracket:
    """One HyperBand bracket: its trials, current milestone and progress."""

    def __init__(
        self,
        time_attr: str,
        max_trials: int,
        init_t_attr: int,
        max_t_attr: int,
        eta: float,
        s: int,
        stop_last_trials: bool = True,
    ):
        self._live_trials: Dict[Trial, Optional[Dict]] = {}
        self._all_trials: List[Trial] = []
        self._time_attr = time_attr
        self._n = self._n0 = max_trials
        self._r = self._r0 = init_t_attr
        self._max_t_attr = max_t_attr
        self._cumul_r = self._r0
        self._eta = eta
        self._halves = s
        self._total_work = self._calculate_total_work(self._n0, self._r0, s)
        self._completed_progress = 0
        self.stop_last_trials = stop_last_trials
        self.is_being_processed = False
        self.trials_to_unpause: Set[Trial] = set()

    def add_trial(self, trial: Trial) -> None:
        assert not self.filled(), "Cannot add trial to filled bracket!"
        self._live_trials[trial] = None
        self._all_trials.append(trial)

    def cur_iter_done(self) -> bool:
        return all(
            self._get_result_time(result) >= self._cumul_r for result in self._live_trials.values()
        )

    def finished(self) -> bool:
        if not self.stop_last_trials:
            return False
        return self._halves == 0 and self.cur_iter_done()

    def current_trials(self) -> List[Trial]:
        return list(self._live_trials)

    def continue_trial(self, trial: Trial) -> bool:
        result = self._live_trials[trial]
        if not self.stop_last_trials and self._halves == 0:
            return True
        return self._get_result_time(result) < self._cumul_r

    def filled(self) -> bool:
        return len(self._live_trials) == self._n

    def successive_halving(self, metric: str, metric_op: float) -> Tuple[List[Trial], List[Trial]]:
        if self._halves == 0 and not self.stop_last_trials:
            return list(self._live_trials), []
        assert self._halves > 0
        self._halves -= 1
        self._n = int(np.ceil(self._n / self._eta))
        self._r *= self._eta
        self._r = int(min(self._r, self._max_t_attr))
        self._cumul_r = self._r
        sorted_trials = sorted(
            self._live_trials, key=lambda t: metric_op * self._live_trials[t][metric]
        )
        return sorted_trials[-self._n :], sorted_trials[: -self._n]

    def update_trial_stats(self, trial: Trial, result: Dict) -> None:
        assert trial in self._live_trials
        observed_time = self._get_result_time(result)
        delta = observed_time - self._get_result_time(self._live_trials[trial])
        if delta <= 0:
            logger.info("Restoring from a previous point in time (delta=%s)", delta)
        self._completed_progress += delta
        self._live_trials[trial] = result
        self.trials_to_unpause.discard(trial)

    def cleanup_trial(self, trial: Trial) -> None:
        self._live_trials.pop(trial, None)

    def cleanup_full(self, tune_controller: SchedulerController) -> None:
        for trial in self.current_trials():
            if trial.status == PAUSED:
                tune_controller.stop_trial(trial)

    def completion_percentage(self) -> float:
        if self.finished():
            return 1.0
        return min(self._completed_progress / self._total_work, 1.0)

    def _get_result_time(self, result: Optional[Dict]) -> float:
        if result is None:
            return 0
        return result[self._time_attr]

    def _calculate_total_work(self, n: int, r: float, s: int) -> int:
        work = 0
        cumulative_r = r
        for _ in range(s + 1):
            work += int(n) * int(r)
            n = int(np.ceil(n / self._eta))
            r *= self._eta
            r = int(min(r, self._max_t_attr - cumulative_r))
        return work

    def __repr__(self) -> str:
        status = "Max Size (n)={}, Milestone (r)={}, completed={:.1%}".format(
            self._n, self._cumul_r, self.completion_percentage()
        )
        counts = collections.Counter(t.status for t in self._all_trials)
        statuses = ", ".join(sorted("{}: {}".format(k, v) for k, v in counts.items()))
        return "Bracket({}): {{{}}} ".format(status, statuses)
