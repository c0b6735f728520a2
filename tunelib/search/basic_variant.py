"""``BasicVariantGenerator``: the default search, grid expansion plus random sampling.

Example::

    alg = BasicVariantGenerator(random_state=0)
    alg.add_configurations({"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)}, 4)
    alg.total_samples          # 8
    alg.next_suggestion("t0").experiment_tag   # '0_a=1,b=...'
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from typing import Dict, List, Optional, Union

import numpy as np

from tunelib.search._util import atomic_save, has_file, load_newest
from tunelib.search.domain import _BackwardsCompatibleNumpyRng
from tunelib.search.search_algorithm import SearchAlgorithm, Suggestion
from tunelib.search.variant_generator import (
    _count_spec_samples,
    _generate_variants_internal,
    count_variants,
    flatten_resolved_vars,
    format_vars,
    get_preset_variants,
    validate_space,
)

logger = logging.getLogger(__name__)

SERIALIZATION_THRESHOLD = 1e6


class _VariantStream:
    """The variants of one ``add_configurations`` call: presets first, then samples.

    Each sample's grid is listed eagerly (so the state pickles and resume continues where
    it stopped), unless the grid is huge; then it is lazy and resume is disabled, as Ray.
    """

    def __init__(self, param_space, num_samples, points_to_evaluate, constant_grid_search, lazy):
        self.param_space = param_space
        self.num_samples_left = math.inf if num_samples == -1 else num_samples
        self.points_to_evaluate = list(points_to_evaluate)
        self.constant_grid_search = constant_grid_search
        self.lazy = lazy
        self.pending: Union[list, object] = []

    def has_next(self) -> bool:
        return bool(
            self._pending_has_next() or self.points_to_evaluate or self.num_samples_left > 0
        )

    def _pending_has_next(self) -> bool:
        if isinstance(self.pending, list):
            return bool(self.pending)
        return self._lazy_next is not None

    def next(self, rng):
        if not self._pending_has_next():
            if self.points_to_evaluate:
                point = self.points_to_evaluate.pop(0)
                variants = get_preset_variants(
                    self.param_space, point, self.constant_grid_search, random_state=rng
                )
            elif self.num_samples_left > 0:
                variants = _generate_variants_internal(
                    self.param_space, self.constant_grid_search, random_state=rng
                )
            else:
                return None
            self.num_samples_left -= 1
            if self.lazy:
                self.pending = variants
                self._lazy_next = next(variants, None)
            else:
                self.pending = list(variants)
        if isinstance(self.pending, list):
            return self.pending.pop(0)
        current, self._lazy_next = self._lazy_next, next(self.pending, None)
        return current


class BasicVariantGenerator(SearchAlgorithm):
    """Uses Tune's variant generation for resolving variables (the default search).

    Args:
        points_to_evaluate: Configs to run first; each replaces one of the ``num_samples``
            samples (its grid parameters not fixed by the point are still expanded).
        max_concurrent: Maximum number of live trials; 0 means no limit.
        constant_grid_search: Sample random variables once and keep them over the grid
            (default: resample for every grid point).
        random_state: Seed or numpy ``Generator``/``RandomState`` for reproducible samples;
            None uses ``np.random``.

    Example::

        tuner = tune.Tuner(
            lambda config: config["a"] + config["b"],
            tune_config=tune.TuneConfig(num_samples=4, search_alg=BasicVariantGenerator(
                points_to_evaluate=[{"a": 2, "b": 2}, {"a": 1}, {"b": 2}])),
            param_space={"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)},
        )   # 6 trials: (2, 2); (1, random); (1, 2), (2, 2); (1, random), (2, random)
    """

    CKPT_FILE_TMPL = "basic-variant-state-{}.json"

    def __init__(
        self,
        points_to_evaluate: Optional[List[Dict]] = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: Optional[Union[int, np.random.Generator, np.random.RandomState]] = None,
    ):
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise TypeError(
                f"`points_to_evaluate` must be a list of dicts, got {points_to_evaluate!r}"
            )
        for point in points_to_evaluate or []:
            if not isinstance(point, dict):
                raise TypeError(f"`points_to_evaluate` must hold dicts, got {point!r}")
        if not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise ValueError(f"`max_concurrent` must be an int >= 0, got {max_concurrent!r}")
        self._points_to_evaluate = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self._constant_grid_search = constant_grid_search
        self._random_state = _BackwardsCompatibleNumpyRng(random_state)
        self._streams: List[_VariantStream] = []
        self._counter = 0
        self._total_samples: Optional[int] = 0
        self._live_trials = set()
        self._finished = False
        self._restored = False

    @property
    def total_samples(self) -> Optional[int]:
        """Trials this generator will produce; None when ``num_samples=-1``."""
        return self._total_samples

    def add_configurations(self, param_space: Dict, num_samples: int = 1) -> None:
        """Add a param space to expand ``num_samples`` times (-1: forever).

        Example::

            alg.add_configurations({"lr": tune.grid_search([0.1, 0.01])}, num_samples=2)
        """
        if self._restored:
            logger.debug("Search state was restored; ignoring add_configurations().")
            return
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < -1:
            raise ValueError(
                f"`num_samples` must be an int >= 0, or -1 for no limit; got {num_samples!r}"
            )
        param_space = copy.deepcopy(param_space if param_space is not None else {})
        validate_space(param_space)
        points = copy.deepcopy(self._points_to_evaluate)
        grid_size = _count_spec_samples(param_space)
        lazy = grid_size > SERIALIZATION_THRESHOLD
        if lazy:
            warnings.warn(
                f"The number of pre-generated samples ({grid_size}) exceeds the serialization "
                f"threshold ({int(SERIALIZATION_THRESHOLD)}). Resume ability is disabled. To "
                "fix this, reduce the number of dimensions/size of the provided grid search.",
                stacklevel=2,
            )
        if num_samples == -1 or self._total_samples is None:
            self._total_samples = None
        else:
            self._total_samples += count_variants(param_space, num_samples, points)
        self._streams.append(
            _VariantStream(param_space, num_samples, points, self._constant_grid_search, lazy)
        )
        self._finished = False

    def next_suggestion(self, trial_id: str) -> Optional[Suggestion]:
        """The next variant, or None at the concurrency limit or when finished.

        Example::

            alg.next_suggestion("a1b2c_00000")   # Suggestion(config=..., experiment_tag='0_...')
        """
        if self.is_finished():
            return None
        if self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent:
            return None
        while self._streams and not self._streams[0].has_next():
            self._streams.pop(0)
        if not self._streams:
            self.set_finished()
            return None
        item = self._streams[0].next(self._random_state)
        if item is None:
            return self.next_suggestion(trial_id)
        resolved_vars, config = item
        tag = str(self._counter)
        if resolved_vars:
            tag += "_" + format_vars(resolved_vars)
        self._counter += 1
        self._live_trials.add(trial_id)
        return Suggestion(
            config=config,
            evaluated_params=flatten_resolved_vars(resolved_vars),
            experiment_tag=tag,
        )

    def is_finished(self) -> bool:
        if not self._finished and not any(s.has_next() for s in self._streams):
            self._finished = True
        return self._finished

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        self._live_trials.discard(trial_id)

    def get_state(self) -> Optional[Dict]:
        """The generator's state (None when a lazy, huge grid makes it unsaveable)."""
        if any(s.lazy for s in self._streams):
            return None
        state = self.__dict__.copy()
        state.pop("_restored", None)
        return state

    def set_state(self, state: Dict) -> None:
        self.__dict__.update(state)
        self._restored = True

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Write ``basic-variant-state-<session_str>.json`` (pickled, as Ray) into ``dirpath``.

        Example::

            alg.save_to_dir(exp_dir, "2026-11-23_08-44-53")
        """
        state = self.get_state()
        if state is None:
            return
        atomic_save(state, dirpath, self.CKPT_FILE_TMPL.format(session_str))

    def has_checkpoint(self, dirpath: str) -> bool:
        return has_file(dirpath, self.CKPT_FILE_TMPL.format("*"))

    def restore_from_dir(self, dirpath: str) -> None:
        """Continue the saved search: configs already suggested are not suggested again.

        Example::

            alg = BasicVariantGenerator(); alg.restore_from_dir(exp_dir)
        """
        state = load_newest(dirpath, self.CKPT_FILE_TMPL.format("*"))
        if not state:
            raise RuntimeError(f"Unable to find checkpoint in {dirpath}.")
        self.set_state(state)
