"""``SearchGenerator``: turn any ``Searcher`` into the controller-facing ``SearchAlgorithm``.

Example::

    alg = SearchGenerator(OptunaSearch(metric="loss", mode="min"))
    alg.set_search_properties("loss", "min", {"x": tune.uniform(-1, 1)})
    alg.add_configurations({"x": tune.uniform(-1, 1)}, num_samples=20)
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Dict, Optional

from tunelib.search._util import (
    atomic_save,
    flatten_dict,
    format_path,
    has_file,
    load_newest,
    merge_dicts,
)
from tunelib.search.repeater import _warn_num_samples
from tunelib.search.search_algorithm import SearchAlgorithm, Suggestion
from tunelib.search.searcher import Searcher, set_search_properties_backwards_compatible
from tunelib.search.variant_generator import (
    _split_resolved_unresolved_values,
    format_vars,
    resolve_nested_dict,
)

logger = logging.getLogger(__name__)


class SearchGenerator(SearchAlgorithm):
    """Generates trial configs from a ``Searcher``'s suggestions.

    The trial's config is the param space with the suggestion merged in; its tag counts
    from 1 and lists all config values (Ray's format), e.g. ``"1_a=0.5000,b=3"``.

    Args:
        searcher: The Searcher that suggests configurations.

    Example::

        alg = SearchGenerator(ConcurrencyLimiter(OptunaSearch(), max_concurrent=4))
    """

    CKPT_FILE_TMPL = "search_gen_state-{}.json"

    def __init__(self, searcher: Searcher):
        if not isinstance(searcher, Searcher):
            raise TypeError(f"`searcher` must be a tunelib Searcher, got {type(searcher).__name__}")
        self.searcher = searcher
        self._param_space: Optional[Dict] = None
        self._counter = 0
        self._total_samples: float = 0
        self._finished = False
        self._restored = False

    @property
    def metric(self):
        return self.searcher.metric

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        """Pass metric, mode and param space to the searcher.

        Raises ``ValueError`` if the searcher already has its own space while ``config``
        still holds search-space definitions (they would never be sampled).

        Example::

            alg.set_search_properties("loss", "min", {"x": tune.uniform(0, 1)})
        """
        ok = set_search_properties_backwards_compatible(
            self.searcher.set_search_properties, metric, mode, config, **spec
        )
        if not ok and config:
            unresolved = _split_resolved_unresolved_values(config)[1]
            if unresolved:
                paths = ", ".join(format_path(p) for p in unresolved)
                raise ValueError(
                    f"`param_space` holds search-space definitions ({paths}), but the "
                    f"search algorithm {type(self.searcher).__name__} was already "
                    "instantiated with a search space. Make sure that `param_space` does "
                    "not contain any more parameter definitions - include them in the "
                    "search algorithm's search space if necessary."
                )
        return ok

    @property
    def total_samples(self) -> Optional[int]:
        """``num_samples``; None when it is -1 (search until the searcher says FINISHED)."""
        return None if math.isinf(self._total_samples) else int(self._total_samples)

    def add_configurations(self, param_space: Dict, num_samples: int = 1) -> None:
        """Register the param space (its constants go into every config) and the budget.

        Example::

            alg.add_configurations({"x": tune.uniform(0, 1), "epochs": 10}, num_samples=20)
        """
        if self._restored:
            logger.debug("Search state was restored; ignoring add_configurations().")
            return
        if self._param_space is not None:
            raise ValueError("SearchAlgorithms can only support 1 experiment at a time.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < -1:
            raise ValueError(
                f"`num_samples` must be an int >= 0, or -1 for no limit; got {num_samples!r}"
            )
        self._param_space = copy.deepcopy(param_space or {})
        self._total_samples = math.inf if num_samples == -1 else num_samples
        _warn_num_samples(self.searcher, None if num_samples == -1 else num_samples)

    def next_suggestion(self, trial_id: str) -> Optional[Suggestion]:
        """Ask the searcher; None if it has nothing now (or is finished).

        Example::

            s = alg.next_suggestion("a1b2c_00000")   # s.experiment_tag == '1_x=0.4170'
        """
        if self.is_finished():
            return None
        suggested = self.searcher.suggest(trial_id)
        if suggested == Searcher.FINISHED:
            self._finished = True
            return None
        if suggested is None:
            return None
        config = merge_dicts(self._param_space or {}, copy.deepcopy(suggested))
        self._counter += 1
        tag = f"{self._counter}_{format_vars(resolve_nested_dict(config))}"
        return Suggestion(
            config=config, evaluated_params=flatten_dict(suggested), experiment_tag=tag
        )

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        self.searcher.on_trial_complete(trial_id=trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self._counter >= self._total_samples or self._finished

    def get_state(self) -> Dict:
        return {
            "counter": self._counter,
            "total_samples": self._total_samples,
            "finished": self._finished,
            "param_space": self._param_space,
        }

    def set_state(self, state: Dict) -> None:
        self._counter = state["counter"]
        self._total_samples = state["total_samples"]
        self._finished = state["finished"]
        self._param_space = state["param_space"]
        self._restored = True

    def has_checkpoint(self, dirpath: str) -> bool:
        return has_file(dirpath, self.CKPT_FILE_TMPL.format("*"))

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Save wrappers' states and this generator's; the base searcher saves its own file.

        Example::

            alg.save_to_dir(exp_dir, "2026-11-23_08-44-53")
        """
        state = self.get_state()
        searcher = self.searcher
        while hasattr(searcher, "searcher"):  # ConcurrencyLimiter, Repeater, ...
            state["name:" + type(searcher).__name__] = searcher.get_state()
            searcher = searcher.searcher
        searcher.save_to_dir(dirpath, session_str)
        atomic_save(state, dirpath, self.CKPT_FILE_TMPL.format(session_str))

    def restore_from_dir(self, dirpath: str) -> None:
        """Restore wrappers, base searcher and counters; the search continues where it was.

        Example::

            alg = SearchGenerator(OptunaSearch()); alg.restore_from_dir(exp_dir)
        """
        state = load_newest(dirpath, self.CKPT_FILE_TMPL.format("*"))
        if not state:
            raise RuntimeError(f"Unable to find checkpoint in {dirpath}.")
        searcher = self.searcher
        while hasattr(searcher, "searcher"):
            key = "name:" + type(searcher).__name__
            if key in state:
                searcher.set_state(state.pop(key))
            else:
                logger.warning("%s was not found in the saved search state.", key)
            searcher = searcher.searcher
        searcher.restore_from_dir(dirpath)
        self.set_state(state)
