"""``NevergradSearch``: Nevergrad's gradient-free optimizers as a tunelib ``Searcher``, as Ray's.

Example::

    import nevergrad as ng
    from tunelib.search.nevergrad import NevergradSearch
    search = NevergradSearch(optimizer=ng.optimizers.OnePlusOne, metric="loss", mode="min")
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search))
"""

from __future__ import annotations

import inspect
import logging
import math
import pickle
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._flat_path import flat_path_label
from tunelib.search._util import unflatten_dict
from tunelib.search.domain import Categorical, Domain, Float, Integer, LogUniform, Quantized
from tunelib.search.searcher import Searcher
from tunelib.search.variant_generator import flat_spec_vars, parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"


def _import_nevergrad():
    try:
        import nevergrad as ng
        from nevergrad.optimization import Optimizer  # noqa: F401
        from nevergrad.optimization.base import ConfiguredOptimizer  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Nevergrad must be installed! You can install Nevergrad with the command: "
            "`pip install nevergrad` (or pip install 'tunelib[nevergrad]')."
        ) from exc
    return ng


class NevergradSearch(Searcher):
    """A wrapper around Nevergrad's optimizers (``ask``/``tell``), as Ray's.

    Nevergrad minimises; for ``mode="max"`` the metric is negated when told.

    Args:
        optimizer: A Nevergrad ``Optimizer`` class (e.g. ``ng.optimizers.OnePlusOne``), a
            ``ConfiguredOptimizer``, or an ``Optimizer`` instance (then ``space`` is a list
            of parameter names or None).
        optimizer_kwargs: Keyword arguments for the optimizer class (e.g. ``budget``).
        space: Nevergrad's parametrization (``ng.p.Dict``), or leave None to convert the
            Tuner's ``param_space``.
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first.

    Example::

        space = ng.p.Dict(width=ng.p.Scalar(lower=0, upper=20),
                          activation=ng.p.Choice(choices=["relu", "tanh"]))
        search = NevergradSearch(optimizer=ng.optimizers.OnePlusOne, space=space,
                                 metric="mean_loss", mode="min")
    """

    def __init__(
        self,
        optimizer: Optional[Any] = None,
        optimizer_kwargs: Optional[Dict] = None,
        space: Optional[Any] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
    ):
        _import_nevergrad()
        from nevergrad.optimization import Optimizer
        from nevergrad.optimization.base import ConfiguredOptimizer

        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self._space = None
        self._opt_factory = None
        self._nevergrad_opt = None
        self._optimizer_kwargs = optimizer_kwargs or {}
        if points_to_evaluate is None:
            self._points_to_evaluate = None
        elif not isinstance(points_to_evaluate, Sequence):
            raise ValueError(
                "Invalid object type passed for `points_to_evaluate`: "
                f"{type(points_to_evaluate)}. Please pass a list of points (dictionaries) "
                "instead."
            )
        else:
            self._points_to_evaluate = list(points_to_evaluate)
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
        if isinstance(optimizer, Optimizer):
            if space is not None and not isinstance(space, list):
                raise ValueError(
                    "If you pass a configured optimizer to Nevergrad, either pass a list of "
                    "parameter names or None as the `space` parameter."
                )
            if self._optimizer_kwargs:
                raise ValueError(
                    "If you pass in optimizer kwargs, either pass an `Optimizer` subclass or "
                    "an instance of `ConfiguredOptimizer`."
                )
            self._parameters = space
            self._nevergrad_opt = optimizer
        elif (inspect.isclass(optimizer) and issubclass(optimizer, Optimizer)) or isinstance(
            optimizer, ConfiguredOptimizer
        ):
            self._opt_factory = optimizer
            self._parameters = None
            self._space = space
        else:
            raise ValueError(
                "The `optimizer` argument passed to NevergradSearch must be either an "
                f"`Optimizer` or a `ConfiguredOptimizer`, got {optimizer!r} (e.g. "
                "optimizer=ng.optimizers.OnePlusOne)."
            )
        self._live_trial_mapping: Dict[str, Any] = {}
        if self._nevergrad_opt is not None or self._space is not None:
            self._setup_nevergrad()

    def _setup_nevergrad(self) -> None:
        if self._opt_factory:
            self._nevergrad_opt = self._opt_factory(self._space, **self._optimizer_kwargs)
        self._metric_op = {"max": -1.0, "min": 1.0}.get(self._mode)  # nevergrad minimises
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        opt = self._nevergrad_opt
        if hasattr(opt, "instrumentation"):
            if opt.instrumentation.kwargs:
                if opt.instrumentation.args:
                    raise ValueError("Instrumented optimizers should use kwargs only")
                if self._parameters is not None:
                    raise ValueError("Instrumented optimizers should provide None as parameter_names")
            else:
                if self._parameters is None:
                    raise ValueError("Non-instrumented optimizers should have a list of parameter_names")
                if len(opt.instrumentation.args) != 1:
                    raise ValueError("Instrumented optimizers should use kwargs only")
        if self._parameters is not None and opt.dimension != len(self._parameters):
            raise ValueError(
                "len(parameters_names) must match optimizer dimension for non-instrumented "
                "optimizers"
            )
        if self._points_to_evaluate:
            # Nevergrad is LIFO: add the points in reverse order
            for point in reversed(self._points_to_evaluate):
                opt.suggest(point)

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self._nevergrad_opt is not None or self._space is not None:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_nevergrad()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(self._nevergrad_opt is not None)
        suggested = self._nevergrad_opt.ask()
        self._live_trial_mapping[trial_id] = suggested
        if not suggested.kwargs:
            if self._parameters:
                return unflatten_dict(dict(zip(self._parameters, suggested.args[0])))
            return unflatten_dict(suggested.value)
        return unflatten_dict(suggested.kwargs)

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        if result:
            candidate = self._live_trial_mapping[trial_id]
            self._nevergrad_opt.tell(candidate, self._metric_op * result[self._metric])
        self._live_trial_mapping.pop(trial_id)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> Any:
        """Convert a tunelib param space to an ``ng.p.Dict`` keyed ``"a/b"``.

        Example::

            NevergradSearch.convert_search_space({"x": tune.uniform(0, 1)})
        """
        ng = _import_nevergrad()
        _, domain_vars, _ = flat_spec_vars(spec, "a Nevergrad search space")

        def resolve_value(path: Tuple, domain: Domain) -> Any:
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                logger.warning("Nevergrad does not support quantization. Dropped quantization.")
                sampler = sampler.get_sampler()
            if isinstance(domain, Float):
                if isinstance(sampler, LogUniform):
                    return ng.p.Log(lower=domain.lower, upper=domain.upper, exponent=math.e)
                return ng.p.Scalar(lower=domain.lower, upper=domain.upper)
            if isinstance(domain, Integer):
                # tunelib's integer upper bounds are exclusive
                if isinstance(sampler, LogUniform):
                    return ng.p.Log(
                        lower=domain.lower, upper=domain.upper - 1, exponent=math.e
                    ).set_integer_casting()
                return ng.p.Scalar(lower=domain.lower, upper=domain.upper - 1).set_integer_casting()
            if isinstance(domain, Categorical):
                return ng.p.Choice(choices=domain.categories)
            raise ValueError(
                f"{flat_path_label(path)}: Nevergrad does not support parameters of type "
                f"`{type(domain).__name__}` with samplers of type `{type(sampler).__name__}`"
            )

        return ng.p.Dict(**{"/".join(path): resolve_value(path, d) for path, d in domain_vars})
