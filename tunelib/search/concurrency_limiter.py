"""``ConcurrencyLimiter``: cap how many of a searcher's suggestions run at once.

Example::

    search_alg = ConcurrencyLimiter(OptunaSearch(metric="loss", mode="min"), max_concurrent=2)
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, List, Optional

from tunelib.search.searcher import Searcher, set_search_properties_backwards_compatible

logger = logging.getLogger(__name__)


class ConcurrencyLimiter(Searcher):
    """A wrapper that limits the number of concurrently live suggestions of ``searcher``.

    If the wrapped searcher limits concurrency itself (its ``set_max_concurrency`` returns
    True), the limiter only passes calls through.

    Args:
        searcher: The Searcher to limit.
        max_concurrent: Maximum number of live suggestions (> 0).
        batch: Wait for the whole batch of live trials to finish before telling the
            searcher their results.

    Example::

        search_alg = ConcurrencyLimiter(HyperOptSearch(metric="accuracy", mode="max"), 2)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=search_alg))
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if (
            isinstance(max_concurrent, bool)
            or not isinstance(max_concurrent, int)
            or max_concurrent < 1
        ):
            raise ValueError(f"`max_concurrent` must be an int >= 1, got {max_concurrent!r}")
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"The `ConcurrencyLimiter` only works with `Searcher` objects (got "
                f"{type(searcher).__name__}). Please try to pass `max_concurrent` to the "
                "search generator directly."
            )
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials = set()
        self.num_unfinished_live_trials = 0
        self.cached_results = {}
        self._limit_concurrency = True
        self._set_searcher_max_concurrency()
        super().__init__(metric=self.searcher.metric, mode=self.searcher.mode)

    def _set_searcher_max_concurrency(self):
        # a searcher with its own concurrency logic takes over
        self._limit_concurrency = not self.searcher.set_max_concurrency(self.max_concurrent)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        self._set_searcher_max_concurrency()
        return set_search_properties_backwards_compatible(
            self.searcher.set_search_properties, metric, mode, config, **spec
        )

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if trial_id in self.live_trials:
            raise ValueError(f"Trial ID {trial_id} must be unique: already found in set.")
        if len(self.live_trials) >= self.max_concurrent:
            logger.debug(
                "Not providing a suggestion for %s due to concurrency limit: %s/%s.",
                trial_id,
                len(self.live_trials),
                self.max_concurrent,
            )
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        if not self._limit_concurrency:
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        if trial_id not in self.live_trials:
            return
        if self.batch:
            self.cached_results[trial_id] = (result, error)
            self.num_unfinished_live_trials -= 1
            if self.num_unfinished_live_trials <= 0:
                # the whole batch is done: now tell the searcher
                for tid, (res, err) in self.cached_results.items():
                    self.searcher.on_trial_complete(tid, result=res, error=err)
                    self.live_trials.remove(tid)
                self.cached_results = {}
                self.num_unfinished_live_trials = 0
        else:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            self.live_trials.remove(trial_id)
            self.num_unfinished_live_trials -= 1

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ):
        return self.searcher.add_evaluated_point(
            parameters, value, error, pruned, intermediate_values
        )

    def get_state(self) -> Dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: Dict):
        self.__dict__.update(state)

    def save(self, checkpoint_path: str):
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str):
        self.searcher.restore(checkpoint_path)

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def mode(self):
        return self.searcher.mode
