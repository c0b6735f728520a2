"""``ZOOptSearch``: ZOOpt's (A)SRacos derivative-free optimizer as a ``Searcher``, as Ray's.

Example::

    from tunelib.search.zoopt import ZOOptSearch
    search = ZOOptSearch(algo="Asracos", budget=20, metric="loss", mode="min")
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search, num_samples=20))
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, List, Optional, Tuple

import cloudpickle

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._util import format_path, unflatten_dict
from tunelib.search.domain import Categorical, Domain, Float, Integer, Quantized, Uniform
from tunelib.search.searcher import Searcher
from tunelib.search.variant_generator import parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"


def _import_zoopt():
    try:
        import zoopt
    except ImportError as exc:
        raise ImportError(
            "ZOOpt not found - please install zoopt by `pip install -U zoopt` "
            "(or pip install 'tunelib[zoopt]')."
        ) from exc
    return zoopt


class ZOOptSearch(Searcher):
    """A wrapper around ZOOpt's SRacos / ASRacos, as Ray's.

    Args:
        algo: ``"asracos"`` (asynchronous, default) or ``"sracos"``.
        budget: Number of samples (required).
        dim_dict: ``{name: (zoopt.ValueType, bounds, precision-or-order)}``; leave None to
            convert the Tuner's ``param_space``.
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Initial samples (as ZOOpt's ``init_samples``).
        parallel_num: Number of parallel evaluations ZOOpt plans for.
        **kwargs: Passed to ZOOpt's ``SRacosTune``.

    Example::

        from zoopt import ValueType
        dim_dict = {"height": (ValueType.CONTINUOUS, [-10, 10], 1e-2),
                    "width": (ValueType.DISCRETE, [-10, 10], False),
                    "layers": (ValueType.GRID, [4, 8, 16])}
        search = ZOOptSearch(algo="Asracos", budget=20, dim_dict=dim_dict,
                             metric="mean_loss", mode="min")
    """

    optimizer = None

    def __init__(
        self,
        algo: str = "asracos",
        budget: Optional[int] = None,
        dim_dict: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        parallel_num: int = 1,
        **kwargs,
    ):
        _import_zoopt()
        if budget is None:
            raise ValueError("`budget` should not be None! (ZOOptSearch(budget=<num samples>))")
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        if algo.lower() not in ("asracos", "sracos"):
            raise ValueError(f"`algo` must be in ['asracos', 'sracos'] currently, got {algo!r}")
        self._algo = algo.lower()
        if isinstance(dim_dict, dict) and dim_dict:
            _, domain_vars, grid_vars = parse_spec_vars(dim_dict)
            if domain_vars or grid_vars:
                logger.warning(
                    UNRESOLVED_SEARCH_SPACE.format(par="dim_dict", cls=type(self).__name__)
                )
                dim_dict = self.convert_search_space(dim_dict, join=True)
        self._dim_dict = dim_dict
        self._budget = budget
        self._metric_op = {"max": -1.0, "min": 1.0}.get(mode)  # zoopt minimises
        self._points_to_evaluate = copy.deepcopy(points_to_evaluate)
        self._live_trial_mapping: Dict[str, Dict] = {}
        self._dim_keys: List[str] = []
        self.solution_dict: Dict[str, object] = {}
        self.best_solution_list: List[object] = []
        self.optimizer = None
        self.kwargs = kwargs
        self.parallel_num = parallel_num
        super().__init__(metric=metric, mode=mode)
        if self._dim_dict:
            self._setup_zoopt()

    def _setup_zoopt(self) -> None:
        zoopt = _import_zoopt()
        from zoopt import Solution
        from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        dim_list = []
        for key in self._dim_dict:
            self._dim_keys.append(key)
            dim_list.append(self._dim_dict[key])
        init_samples = None
        if self._points_to_evaluate:
            logger.warning("`points_to_evaluate` is ignored by ZOOpt in versions <= 0.4.1.")
            init_samples = [
                Solution(x=tuple(point[dim] for dim in self._dim_keys))
                for point in self._points_to_evaluate
            ]
        dim = zoopt.Dimension2(dim_list)
        par = zoopt.Parameter(budget=self._budget, init_samples=init_samples)
        self.optimizer = SRacosTune(
            dimension=dim, parameter=par, parallel_num=self.parallel_num, **self.kwargs
        )

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self._dim_dict:
            return False
        self._dim_dict = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._metric_op = {"max": -1.0, "min": 1.0}.get(self._mode)
        self._setup_zoopt()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(bool(self._dim_dict and self.optimizer))
        solution = self.optimizer.suggest()
        if solution == "FINISHED":
            return Searcher.FINISHED
        if not solution:
            return None
        self.solution_dict[str(trial_id)] = solution
        new_trial = dict(zip(self._dim_keys, solution.get_x()))
        self._live_trial_mapping[trial_id] = new_trial
        return unflatten_dict(new_trial)

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        if result:
            solution = self.solution_dict[str(trial_id)]
            best = self.optimizer.complete(solution, self._metric_op * result[self._metric])
            if best:
                self.best_solution_list.append(best)
        del self._live_trial_mapping[trial_id]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict, join: bool = False) -> Dict[str, Tuple]:
        """Convert a tunelib param space to ZOOpt's ``dim_dict`` keyed ``"a/b"``.

        Example::

            ZOOptSearch.convert_search_space({"x": tune.uniform(0, 1)})
            # {'x': (ValueType.CONTINUOUS, [0, 1], 1e-12)}
        """
        _import_zoopt()
        from zoopt import ValueType

        spec = copy.deepcopy(spec)
        _, domain_vars, grid_vars = parse_spec_vars(spec)
        if not domain_vars and not grid_vars:
            return {}
        if grid_vars:
            raise ValueError(
                f"{format_path(grid_vars[0][0])}: Grid search parameters cannot be "
                "automatically converted to a ZOOpt search space."
            )

        def resolve_value(path: Tuple, domain: Domain) -> Tuple:
            quantize = None
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                quantize, sampler = sampler.q, sampler.sampler
            if isinstance(domain, Float) and isinstance(sampler, Uniform):
                return (ValueType.CONTINUOUS, [domain.lower, domain.upper], quantize or 1e-12)
            if isinstance(domain, Integer) and isinstance(sampler, Uniform):
                return (ValueType.DISCRETE, [domain.lower, domain.upper - 1], True)
            if isinstance(domain, Categorical) and isinstance(sampler, Uniform):
                return (ValueType.GRID, domain.categories)
            raise ValueError(
                f"{format_path(path)}: ZOOpt does not support parameters of type "
                f"`{type(domain).__name__}` with samplers of type `{type(sampler).__name__}`"
            )

        conv_spec = {"/".join(map(str, path)): resolve_value(path, d) for path, d in domain_vars}
        if join:
            spec.update(conv_spec)
            conv_spec = spec
        return conv_spec
