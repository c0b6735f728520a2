"""``TuneBOHB``: BOHB's model-based config generator (hpbandster) as a ``Searcher``, as Ray's.

Use it with :class:`~tunelib.schedulers.HyperBandForBOHB`, which puts each trial's budget
in ``result["hyperband_info"]["budget"]`` and tells this searcher about paused trials.

Example::

    from tunelib.schedulers import HyperBandForBOHB
    from tunelib.search.bohb import TuneBOHB
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min",
                                                   search_alg=TuneBOHB(seed=1),
                                                   scheduler=HyperBandForBOHB(max_t=9)))
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, List, Optional, Tuple

import cloudpickle

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._flat_path import flat_path_label
from tunelib.search.domain import (
    Categorical,
    Domain,
    Float,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
)
from tunelib.search.searcher import Searcher
from tunelib.search.variant_generator import flat_spec_vars, parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"


def _import_configspace():
    try:
        import ConfigSpace
        from hpbandster.optimizers.config_generators.bohb import BOHB  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "HpBandSter must be installed! You can install HpBandSter with the command: "
            "`pip install hpbandster ConfigSpace` (or pip install 'tunelib[bohb]')."
        ) from exc
    return ConfigSpace


class _BOHBJobWrapper:
    """What hpbandster's ``new_result`` reads from a finished job."""

    def __init__(self, loss: float, budget: float, config: Dict):
        self.result = {"loss": loss}
        self.kwargs = {"budget": budget, "config": config.copy()}
        self.exception = None


def unflatten_list_dict(dt: Dict[str, Any], delimiter: str = "/") -> Any:
    """Ray's ``unflatten_list_dict``: like ``unflatten_dict``, digit keys rebuild lists.

    Example::

        unflatten_list_dict({"a/0": 1, "a/1": 2})  # {'a': [1, 2]}
    """
    if not dt:
        return {}
    out: Any = list() if next(iter(dt)).split(delimiter, 1)[0].isdigit() else {}
    for key, val in dt.items():
        path = key.split(delimiter)
        item = out
        for i, k in enumerate(path[:-1]):
            next_type = list if path[i + 1].isdigit() else dict
            if isinstance(item, dict):
                item = item.setdefault(k, next_type())
            else:
                if int(k) >= len(item):
                    item.append(next_type())
                item = item[int(k)]
        if isinstance(item, dict):
            item[path[-1]] = val
        else:
            item.append(val)
    return out


class TuneBOHB(Searcher):
    """BOHB's suggestion component (hpbandster's ``BOHB`` config generator), as Ray's.

    Use together with ``HyperBandForBOHB``.

    Args:
        space: A ``ConfigSpace.ConfigurationSpace``; leave None to convert the Tuner's
            ``param_space``.
        bohb_config: Keyword arguments for hpbandster's ``BOHB`` config generator.
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first.
        seed: Seed of the ConfigSpace (BOHB's random samples).
        max_concurrent: Trials running at once (0: no limit).

    Example::

        import ConfigSpace as CS
        space = CS.ConfigurationSpace()
        space.add(CS.UniformFloatHyperparameter("width", lower=0, upper=20))
        algo = TuneBOHB(space, metric="mean_loss", mode="min")
    """

    def __init__(
        self,
        space: Optional[Any] = None,
        bohb_config: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        seed: Optional[int] = None,
        max_concurrent: int = 0,
    ):
        _import_configspace()
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        self.trial_to_params: Dict[str, Dict] = {}
        self._bohb_config = bohb_config
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
        self._space = space
        self._seed = seed
        self.running: set = set()
        self.paused: set = set()
        self._max_concurrent = max_concurrent
        self._points_to_evaluate = points_to_evaluate
        super().__init__(metric=metric, mode=mode)
        if self._space:
            self._setup_bohb()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self._max_concurrent = max_concurrent
        return True

    def _setup_bohb(self) -> None:
        from hpbandster.optimizers.config_generators.bohb import BOHB

        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        self._metric_op = {"max": -1.0, "min": 1.0}.get(self._mode)  # BOHB minimises a loss
        if self._seed is not None:
            self._space.seed(self._seed)
        self.running = set()
        self.paused = set()
        self.bohber = BOHB(self._space, **(self._bohb_config or {}))

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self._space:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_bohb()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(self._space)
        max_concurrent = self._max_concurrent if self._max_concurrent > 0 else float("inf")
        if len(self.running) >= max_concurrent:
            return None
        if self._points_to_evaluate:
            config = self._points_to_evaluate.pop(0)
        else:
            config, _ = self.bohber.get_config(None)  # the budget argument is unused
        self.trial_to_params[trial_id] = copy.deepcopy(config)
        self.running.add(trial_id)
        return unflatten_list_dict(config)

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if trial_id not in self.paused:
            self.running.add(trial_id)
        if "hyperband_info" not in result:
            logger.warning(
                "BOHB Info not detected in result. Are you using HyperBandForBOHB as a "
                "scheduler?"
            )
        elif "budget" in result.get("hyperband_info", {}):
            self.bohber.new_result(self.to_wrapper(trial_id, result))

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        del self.trial_to_params[trial_id]
        self.paused.discard(trial_id)
        self.running.discard(trial_id)

    def to_wrapper(self, trial_id: str, result: Dict) -> _BOHBJobWrapper:
        return _BOHBJobWrapper(
            self._metric_op * result[self.metric],
            result["hyperband_info"]["budget"],
            self.trial_to_params[trial_id],
        )

    def on_pause(self, trial_id: str) -> None:
        """``HyperBandForBOHB`` paused the trial at a milestone: it no longer counts as running."""
        self.paused.add(trial_id)
        self.running.discard(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """``HyperBandForBOHB`` promoted the paused trial."""
        self.paused.discard(trial_id)
        self.running.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> Any:
        """Convert a tunelib param space to a ``ConfigSpace.ConfigurationSpace`` ("a/b" names).

        Example::

            TuneBOHB.convert_search_space({"x": tune.uniform(0, 1)})
        """
        CS = _import_configspace()
        _, domain_vars, _ = flat_spec_vars(spec, "a TuneBOHB search space")

        def resolve_value(path: Tuple, par: str, domain: Domain) -> Any:
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                logger.warning(
                    "TuneBOHB does not support quantization. Dropped quantization for "
                    "parameter '%s'.",
                    par,
                )
                sampler = sampler.sampler
            if isinstance(domain, Float):
                if isinstance(sampler, (LogUniform, Uniform)):
                    return CS.UniformFloatHyperparameter(
                        par, lower=domain.lower, upper=domain.upper,
                        log=isinstance(sampler, LogUniform),
                    )
                if isinstance(sampler, Normal):
                    bounded = domain.lower is not None and domain.upper is not None
                    if not bounded or not (math.isfinite(domain.lower) and math.isfinite(domain.upper)):
                        raise ValueError(
                            "TuneBOHB does not support unbounded normal distributions. Please "
                            f"specify bounds for parameter '{par}' using "
                            "tune.randn(...).clip(lower, upper) or "
                            "Float(lower, upper).normal(mean, sd)."
                        )
                    return CS.NormalFloatHyperparameter(
                        par, mu=sampler.mean, sigma=sampler.sd,
                        lower=domain.lower, upper=domain.upper, log=False,
                    )
            elif isinstance(domain, Integer):
                if isinstance(sampler, (LogUniform, Uniform)):
                    # tunelib's integer upper bounds are exclusive
                    return CS.UniformIntegerHyperparameter(
                        par, lower=domain.lower, upper=domain.upper - 1,
                        log=isinstance(sampler, LogUniform),
                    )
            elif isinstance(domain, Categorical) and isinstance(sampler, Uniform):
                return CS.CategoricalHyperparameter(par, choices=domain.categories)
            raise ValueError(
                f"{flat_path_label(path)}: TuneBOHB does not support parameters of type "
                f"`{type(domain).__name__}` with samplers of type `{type(sampler).__name__}`"
            )

        cs = CS.ConfigurationSpace()
        add = getattr(cs, "add", None) or cs.add_hyperparameter  # ConfigSpace < 1.0: no `add`
        for path, domain in domain_vars:
            par = "/".join(str(p) for p in path)
            add(resolve_value(path, par, domain))
        return cs
