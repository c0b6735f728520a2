"""``HyperBandForBOHB``: HyperBand without pipelining, the scheduler half of BOHB (Ray's).

Use it with ``TuneBOHB`` (``tunelib.search.bohb``): the scheduler records each trial's
budget in ``result["hyperband_info"]["budget"]`` and tells the searcher when a trial is
paused or resumed (``on_pause`` / ``on_unpause``), so that BOHB's model learns per budget.

Example::

    from tunelib.schedulers import HyperBandForBOHB
    from tunelib.search.bohb import TuneBOHB
    tune.TuneConfig(metric="loss", mode="min", search_alg=TuneBOHB(),
                    scheduler=HyperBandForBOHB(max_t=81))
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from tunelib.schedulers import _util
from tunelib.schedulers.hyperband import HyperBandScheduler, _Bracket
from tunelib.schedulers.trial_scheduler import SchedulerController, TrialScheduler
from tunelib.trial import PAUSED, PENDING, RUNNING, Trial

logger = logging.getLogger(__name__)


def _searcher_hook(tune_controller: SchedulerController, name: str) -> Optional[Any]:
    """The experiment searcher's ``on_pause``/``on_unpause``, through wrappers; None if absent.

    Ray calls ``tune_controller.search_alg.searcher.on_pause`` and fails for searchers
    without it; here only BOHB-aware searchers (``TuneBOHB``) are told.
    """
    obj = getattr(getattr(tune_controller, "search_alg", None), "searcher", None)
    while obj is not None:
        hook = getattr(obj, name, None)
        if hook is not None:
            return hook
        obj = getattr(obj, "searcher", None)  # ConcurrencyLimiter, Repeater
    return None


def _tell(tune_controller: SchedulerController, name: str, trial: Trial) -> None:
    hook = _searcher_hook(tune_controller, name)
    if hook is not None:
        hook(trial.trial_id)


class HyperBandForBOHB(HyperBandScheduler):
    """HyperBand for BOHB: the largest bracket is filled first, and trials pause at a
    milestone even when their bracket is not full, so that BOHB can add trials.

    Arguments as :class:`~tunelib.schedulers.HyperBandScheduler`.

    Example::

        bohb = HyperBandForBOHB(time_attr="training_iteration", metric="mean_loss",
                                mode="min", max_t=100)
        tune.TuneConfig(scheduler=bohb, search_alg=TuneBOHB(space, metric="mean_loss",
                                                            mode="min"))
    """

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Add to the current bracket; open the next-largest bracket (or band) when full."""
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
                s = self._s_max_1 - len(cur_band) - 1
                assert s >= 0, "Current band is filled!"
                if self._get_r0(s) == 0:
                    logger.debug("BOHB: Bracket too small - Retrying...")
                    cur_bracket = None
                else:
                    retry = False
                    cur_bracket = self._create_bracket(s)
                cur_band.append(cur_bracket)
                self._state["bracket"] = cur_bracket
        self._state["bracket"].add_trial(trial)
        self._trial_info[trial] = cur_bracket, self._state["band_idx"]

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        """CONTINUE below the milestone; at it PAUSE (telling the searcher) or halve."""
        result["hyperband_info"] = {}
        if not _util.has_keys(type(self).__name__, result, self._time_attr, self._metric):
            return TrialScheduler.CONTINUE
        bracket, _ = self._trial_info[trial]
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        result["hyperband_info"]["budget"] = bracket._cumul_r
        others = [t for t in bracket._live_trials if t is not trial]
        if not bracket.filled() or any(t.status != PAUSED for t in others):
            _tell(tune_controller, "on_pause", trial)
            return TrialScheduler.PAUSE
        action = self._process_bracket(tune_controller, bracket)
        if action == TrialScheduler.PAUSE:
            _tell(tune_controller, "on_pause", trial)
        return action

    def _process_bracket(self, tune_controller: SchedulerController, bracket: _Bracket) -> str:
        # Ray's HyperBand calls `_unpause_trial` for each promoted paused trial; here the
        # promoted ones are those the halving added to `trials_to_unpause`.
        before = set(bracket.trials_to_unpause)
        action = super()._process_bracket(tune_controller, bracket)
        for trial in bracket.trials_to_unpause - before:
            _tell(tune_controller, "on_unpause", trial)
        return action

    def choose_trial_to_run(
        self, tune_controller: SchedulerController, allow_recurse: bool = True
    ) -> Optional[Trial]:
        """Fair within a band; when nothing runs, process brackets whose trials all wait."""
        for band in self._hyperbands:
            for bracket in [b for b in band if b is not None]:
                for trial in bracket.current_trials():
                    if _startable(trial, bracket):
                        return trial
        if not any(t.status == RUNNING for t in tune_controller.get_trials()):
            for band in self._hyperbands:
                for bracket in band:
                    if bracket and any(t.status == PAUSED for t in bracket.current_trials()):
                        logger.debug("Processing bracket since no trial is running.")
                        self._process_bracket(tune_controller, bracket)
                        if allow_recurse and any(
                            _startable(t, bracket) for t in bracket.current_trials()
                        ):
                            return self.choose_trial_to_run(tune_controller, allow_recurse=False)
        return None

    def save(self, checkpoint_path: str) -> None:
        _util.pickle_state(self, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        _util.unpickle_state(self, checkpoint_path)


def _startable(trial: Trial, bracket: _Bracket) -> bool:
    return trial.status == PENDING or (
        trial.status == PAUSED and trial in bracket.trials_to_unpause
    )
