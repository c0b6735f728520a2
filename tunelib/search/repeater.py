"""``Repeater``: run each suggestion of a searcher several times and report the mean.

Example::

    search_alg = Repeater(OptunaSearch(metric="loss", mode="min"), repeat=3)
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, List, Optional

import numpy as np

from tunelib.search.searcher import Searcher, set_search_properties_backwards_compatible

logger = logging.getLogger(__name__)

TRIAL_INDEX = "__trial_index__"
"""str: config key holding the repeat index of a trial (when ``set_index``)."""


def _warn_num_samples(searcher: Searcher, num_samples: Optional[int]) -> None:
    if isinstance(searcher, Repeater) and num_samples and num_samples % searcher.repeat:
        logger.warning(
            "`num_samples` is now expected to be the total number of trials, including "
            "the repeat trials. For example, set num_samples=15 if you intend to obtain 3 "
            "search algorithm suggestions and repeat each suggestion 5 times. Any leftover "
            "trials (num_samples mod repeat) will be ignored."
        )


class _TrialGroup:
    """Trials sharing one suggested config; the searcher only knows the primary one."""

    def __init__(self, primary_trial_id: str, config: Dict, max_trials: int = 1):
        self.primary_trial_id = primary_trial_id
        self.config = config
        self._trials = {primary_trial_id: None}
        self.max_trials = max_trials

    def add(self, trial_id: str):
        assert len(self._trials) < self.max_trials
        self._trials.setdefault(trial_id, None)

    def full(self) -> bool:
        return len(self._trials) == self.max_trials

    def report(self, trial_id: str, score: float):
        if score is None:
            raise ValueError("Internal Error: Score cannot be None.")
        self._trials[trial_id] = score

    def finished_reporting(self) -> bool:
        return None not in self._trials.values() and len(self._trials) == self.max_trials

    def scores(self) -> List[Optional[float]]:
        return list(self._trials.values())

    def count(self) -> int:
        return len(self._trials)


class Repeater(Searcher):
    """Repeat each configuration of ``searcher`` ``repeat`` times; report the mean score.

    Set ``num_samples`` to a multiple of ``repeat`` (the total number of trials).

    Args:
        searcher: The Searcher to repeat; it sees one trial per group, with the metric
            averaged (NaN-aware) over the group.
        repeat: Trials per suggested configuration.
        set_index: Put the index within the group in ``config["__trial_index__"]``.

    Example::

        re_search_alg = Repeater(OptunaSearch(metric="loss", mode="min"), repeat=10)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            search_alg=re_search_alg, num_samples=20))   # 2 configs x 10 repeats
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True):
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"`repeat` must be an int >= 1, got {repeat!r}")
        self.searcher = searcher
        self.repeat = repeat
        self._set_index = set_index
        self._groups = []
        self._trial_id_to_group = {}
        self._current_group = None
        super().__init__(metric=self.searcher.metric, mode=self.searcher.mode)

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if self._current_group is None or self._current_group.full():
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._current_group = _TrialGroup(trial_id, copy.deepcopy(config), self.repeat)
            self._groups.append(self._current_group)
            index_in_group = 0
        else:
            index_in_group = self._current_group.count()
            self._current_group.add(trial_id)
        config = self._current_group.config.copy()
        if self._set_index:
            config[TRIAL_INDEX] = index_in_group
        self._trial_id_to_group[trial_id] = self._current_group
        return config

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, **kwargs):
        """Record the trial's score (NaN if missing); when the group is done, report the mean."""
        if trial_id not in self._trial_id_to_group:
            logger.error(
                "Trial %s not in group; cannot report score. Seen trials: %s",
                trial_id,
                list(self._trial_id_to_group),
            )
            return
        group = self._trial_id_to_group[trial_id]
        metric = self.searcher.metric
        score = result[metric] if result and metric in result else np.nan
        group.report(trial_id, score)
        if group.finished_reporting():
            self.searcher.on_trial_complete(
                group.primary_trial_id, result={metric: np.nanmean(group.scores())}, **kwargs
            )

    def get_state(self) -> Dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return state

    def set_state(self, state: Dict):
        self.__dict__.update(state)

    def save(self, checkpoint_path: str):
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str):
        self.searcher.restore(checkpoint_path)

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        ok = set_search_properties_backwards_compatible(
            self.searcher.set_search_properties, metric, mode, config, **spec
        )
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok
