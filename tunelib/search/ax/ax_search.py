"""``AxSearch``: Ax's adaptive experiments (Sobol, then BoTorch's Bayesian optimisation) as a
tunelib ``Searcher``, as Ray's.

Built on ax-platform 1.x's ``AxClient`` (``ax.service.ax_client``), the API Ray 2.60's
``AxSearch`` drives (Ray's CI pins ax-platform 1.2.1). A seed reaches Ax as Ray passes it:
through ``**ax_kwargs`` to ``AxClient``, e.g. ``AxSearch(random_seed=7)``; it makes the Sobol
initialisation deterministic (and seeds BoTorch).

Example::

    from tunelib.search.ax import AxSearch
    search = AxSearch(metric="loss", mode="min", random_seed=7)
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search))
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.metadata
import inspect
import logging
import math
from typing import Any, Dict, List, Optional, Tuple, Union

import cloudpickle
from packaging.specifiers import SpecifierSet

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._flat_path import flat_path_label
from tunelib.search._util import flatten_dict
from tunelib.search.bohb.bohb_search import unflatten_list_dict
from tunelib.search.domain import (
    Categorical,
    Domain,
    Float,
    Integer,
    LogUniform,
    Quantized,
    Uniform,
)
from tunelib.search.searcher import Searcher
from tunelib.search.variant_generator import flat_spec_vars, parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"


# the Ax releases whose AxClient API Ray 2.60's AxSearch drives: Ray's CI pins 1.2.1; 1.3
# dropped ``Objective.metric``; 1.0 fails with pandas 3 once BoTorch takes over
SUPPORTED_AX = ">=1.2.1,<1.3"


@functools.lru_cache(maxsize=None)
def _import_ax_client():
    """``ax.service.ax_client`` (``AxClient``, ``ObjectiveProperties``), or Ray's ImportError
    (also for an ax-platform release outside ``SUPPORTED_AX``)."""
    try:
        from ax.service import ax_client
    except ImportError as exc:
        raise ImportError(
            "Ax must be installed! You can install AxSearch with the command: "
            f"`pip install 'ax-platform{SUPPORTED_AX}'` (or pip install 'tunelib[ax]')."
        ) from exc
    installed = importlib.metadata.version("ax-platform")
    if installed not in SpecifierSet(SUPPORTED_AX):
        raise ImportError(
            f"AxSearch needs ax-platform{SUPPORTED_AX} (the AxClient API Ray's AxSearch "
            f"uses), found ax-platform {installed}: pip install 'ax-platform{SUPPORTED_AX}'."
        )
    return ax_client


def _has_experiment(client: Any) -> bool:
    """Whether ``client`` (an ``AxClient``) has an experiment; Ax 1.x asserts when it has not."""
    try:
        _ = client.experiment
    except AssertionError as exc:
        if "Experiment not set" not in str(exc):
            raise
        return False
    return True


def _check_ax_kwargs(ax_kwargs: Dict[str, Any], client_cls: Any) -> None:
    """Raise ``TypeError`` naming a keyword ``AxClient`` does not take, as
    ``tunelib._validation.check_keywords`` words it (that one wraps a call; this checks
    keywords kept for a client created later)."""
    accepted = [p for p in inspect.signature(client_cls.__init__).parameters if p != "self"]
    for key in ax_kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"AxClient() (given AxSearch's **ax_kwargs) got an unexpected keyword "
                f"argument {key!r}{hint}. Allowed: {', '.join(accepted)}."
            )


def _path_order(name: str) -> Tuple:
    """Sort key of an Ax parameter name ``"a/1/b"``: list indices numerically."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split("/"))


def _to_config(parameters: Dict[str, Any]) -> Dict:
    """Ax's flat ``{"a/b": v, "l/0": v}`` -> the nested config (lists rebuilt).

    List elements must come in index order, which Ax does not keep when a list mixes
    constants and tunables (the constants come first): then the keys are sorted first,
    as Ray does (numerically here, so that index 10 follows 9)."""
    if any(p.isdigit() for name in parameters for p in name.split("/")):
        parameters = dict(sorted(parameters.items(), key=lambda kv: _path_order(kv[0])))
    return unflatten_list_dict(parameters)


class AxSearch(Searcher):
    """A wrapper around Ax (`ax.dev <https://ax.dev/>`_): Sobol trials first, then BoTorch.

    Results whose metric is NaN or infinite abandon their Ax trial instead of telling Ax.
    A trial that ends without a result (an error) is abandoned too (Ray leaves it running
    in Ax, where BoTorch keeps treating it as pending).

    Args:
        space: Ax parameters (a list of dicts with ``"name"``, ``"type"``: ``"range"``,
            ``"choice"`` or ``"fixed"``, and ``"bounds"``/``"values"``/``"value"``), or a
            tunelib space; leave None to convert the Tuner's ``param_space``. With a space,
            pass ``metric`` and ``mode`` here too.
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first (nested or ``"a/b"`` keys; constants of
            the space may be left out).
        parameter_constraints: Ax parameter constraints, e.g. ``"x3 >= x4"``.
        outcome_constraints: Ax outcome constraints, e.g. ``"m1 <= 3."`` (those metrics
            must be in the trial's last result too).
        ax_client: An ``AxClient``; if it already has an experiment, pass none of
            ``space``, ``metric``, ``mode`` and the constraints.
        **ax_kwargs: Arguments for the ``AxClient`` that AxSearch creates, e.g.
            ``random_seed``, ``enforce_sequential_optimization``, ``verbose_logging``.

    Example::

        parameters = [{"name": "x1", "type": "range", "bounds": [0.0, 1.0]},
                      {"name": "x2", "type": "range", "bounds": [0.0, 1.0]}]
        search = AxSearch(space=parameters, metric="score", mode="max", random_seed=3)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=search))
    """

    def __init__(
        self,
        space: Optional[Union[Dict, List[Dict]]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        parameter_constraints: Optional[List] = None,
        outcome_constraints: Optional[List] = None,
        ax_client: Optional[Any] = None,
        **ax_kwargs,
    ):
        client_module = _import_ax_client()
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        if ax_client is not None and ax_kwargs:
            logger.warning(
                f"AxSearch got an `ax_client`, so the AxClient arguments {sorted(ax_kwargs)} "
                "are not used: set them when creating the AxClient instead."
            )
        _check_ax_kwargs(ax_kwargs, client_module.AxClient)
        if points_to_evaluate is not None and not (
            isinstance(points_to_evaluate, list)
            and all(isinstance(p, dict) for p in points_to_evaluate)
        ):
            raise TypeError(
                f"`points_to_evaluate` must be a list of dicts, got {points_to_evaluate!r}"
            )
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
            space = self.convert_search_space(space)
        self._ax = ax_client
        self._ax_kwargs = ax_kwargs
        self._space = space
        self._parameter_constraints = parameter_constraints
        self._outcome_constraints = outcome_constraints
        self._points_to_evaluate = copy.deepcopy(points_to_evaluate)
        self._live_trial_mapping: Dict[str, int] = {}
        if self._ax or self._space:
            self._setup_experiment()

    def _setup_experiment(self) -> None:
        client_module = _import_ax_client()
        if not self._ax:
            self._ax = client_module.AxClient(**self._ax_kwargs)
        if _has_experiment(self._ax):
            given = {
                "space": self._space,
                "parameter_constraints": self._parameter_constraints,
                "outcome_constraints": self._outcome_constraints,
                "mode": self._mode,
                "metric": self._metric,
            }
            if any(given.values()):
                raise ValueError(
                    "If you create the Ax experiment yourself (by passing an AxClient with an "
                    "experiment), do not pass values for these parameters to AxSearch: "
                    f"{', '.join(k for k, v in given.items() if v)}."
                )
        else:
            if not self._space:
                raise ValueError(
                    "You have to create an Ax experiment by calling "
                    "`AxClient.create_experiment()`, or pass an Ax search space as `space` "
                    "to AxSearch, or pass a `param_space` dict to `tune.Tuner()`."
                )
            if self._mode not in ("min", "max"):
                raise ValueError(
                    "Please specify the `mode` argument when initializing the AxSearch object "
                    "(with a `space`, AxSearch creates the Ax experiment at once) or pass it "
                    "to `tune.TuneConfig()`."
                )
            if self._metric is None:
                self._metric = DEFAULT_METRIC
            self._ax.create_experiment(
                parameters=self._space,
                objectives={
                    self._metric: client_module.ObjectiveProperties(minimize=self._mode == "min")
                },
                parameter_constraints=self._parameter_constraints,
                outcome_constraints=self._outcome_constraints,
            )
        experiment = self._ax.experiment
        objective = experiment.optimization_config.objective
        first = objective.objectives[0] if hasattr(objective, "objectives") else objective
        self._mode = "min" if first.minimize else "max"
        self._metric = first.metric.name
        if self._points_to_evaluate:
            self._points_to_evaluate = [
                self._complete_point(i, p) for i, p in enumerate(self._points_to_evaluate)
            ]
        if getattr(self._ax, "_enforce_sequential_optimization", False):
            logger.warning("Detected sequential enforcement. Be sure to use a ConcurrencyLimiter.")

    def _complete_point(self, index: int, point: Dict) -> Dict:
        """``point`` as Ax parameters (flat keys), constants of the space filled in."""
        from ax.core.parameter import FixedParameter

        flat = flatten_dict(point, flatten_list=True)
        search_space = self._ax.experiment.search_space.parameters
        for key in flat:
            if key not in search_space:
                close = difflib.get_close_matches(key, list(search_space), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"points_to_evaluate[{index}]: {key!r} is not a parameter of the Ax "
                    f"search space ({', '.join(search_space)}).{hint}"
                )
        fixed = {n: p.value for n, p in search_space.items() if isinstance(p, FixedParameter)}
        missing = [n for n in search_space if n not in flat and n not in fixed]
        if missing:
            raise ValueError(
                f"points_to_evaluate[{index}]: {point!r} lacks the parameter(s) "
                f"{', '.join(missing)}; a point must set every tuned parameter."
            )
        return {**fixed, **flat}

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self._ax:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_experiment()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(self._ax)
        from ax.exceptions.core import DataRequiredError
        from ax.exceptions.generation_strategy import MaxParallelismReachedException

        if self._points_to_evaluate:
            parameters, trial_index = self._ax.attach_trial(self._points_to_evaluate.pop(0))
        else:
            try:
                parameters, trial_index = self._ax.get_next_trial()
            except (MaxParallelismReachedException, DataRequiredError):
                return None  # Ax waits for results first; asked again later
        self._live_trial_mapping[trial_id] = trial_index
        return _to_config(parameters)

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        """Tell Ax the trial's metric (and the outcome-constraint metrics) from ``result``.

        Example::

            searcher.on_trial_complete("t1", {"loss": 0.4})
        """
        trial_index = self._live_trial_mapping.pop(trial_id)
        if not result:
            self._ax.abandon_trial(
                trial_index=trial_index, reason=f"{trial_id} ended without a result"
            )
            return
        constraints = self._ax.experiment.optimization_config.outcome_constraints
        metrics = [self._metric] + [c.metric.name for c in constraints]
        missing = [m for m in metrics if m not in result]
        if missing:
            raise ValueError(
                f"AxSearch: the last result of trial {trial_id} lacks {', '.join(missing)} "
                f"(it has {', '.join(sorted(result))}); report the metric and the "
                "outcome-constraint metrics in every result."
            )
        for m in metrics:
            if not math.isfinite(result[m]):
                self._ax.abandon_trial(
                    trial_index=trial_index, reason=f"nan/inf metrics reported by {trial_id}"
                )
                return
        self._ax.complete_trial(
            trial_index=trial_index, raw_data={m: (result[m], None) for m in metrics}
        )

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> List[Dict]:
        """Convert a tunelib param space to Ax parameters named ``"a/b"`` (``"l/0"`` for
        list elements); constants become ``"fixed"`` parameters.

        Raises ``ValueError`` naming the parameter for what Ax cannot express (grid_search,
        sample_from, randn).

        Example::

            AxSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1), "bs": 32})
            # [{'name': 'bs', 'type': 'fixed', 'value': 32},
            #  {'name': 'lr', 'type': 'range', 'bounds': [0.0001, 0.1],
            #   'value_type': 'float', 'log_scale': True}]
        """
        resolved_vars, domain_vars, _ = flat_spec_vars(spec, "an Ax search space; use tune.choice([...])")

        def name(path: Tuple) -> str:
            return "/".join(str(p) for p in path)

        def resolve_value(path: Tuple, domain: Domain) -> Dict:
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                logger.warning("AxSearch does not support quantization. Dropped quantization.")
                sampler = sampler.sampler
            log_scale = isinstance(sampler, LogUniform)
            if isinstance(domain, Float) and isinstance(sampler, (LogUniform, Uniform)):
                return {"name": name(path), "type": "range",
                        "bounds": [domain.lower, domain.upper], "value_type": "float",
                        "log_scale": log_scale}
            if isinstance(domain, Integer) and isinstance(sampler, (LogUniform, Uniform)):
                # tunelib's integer upper bounds are exclusive, Ax's inclusive
                return {"name": name(path), "type": "range",
                        "bounds": [domain.lower, domain.upper - 1], "value_type": "int",
                        "log_scale": log_scale}
            if isinstance(domain, Categorical) and isinstance(sampler, Uniform):
                return {"name": name(path), "type": "choice", "values": domain.categories}
            kind = "sample_from" if domain.is_function() else type(domain).__name__
            raise ValueError(
                f"{flat_path_label(path)}: AxSearch does not support parameters of type "
                f"`{kind}` with samplers of type `{type(sampler).__name__}`; allowed: "
                "tune.uniform, loguniform, randint, lograndint, choice (quantized ones lose "
                "their quantization)."
            )

        fixed = [{"name": name(path), "type": "fixed", "value": v} for path, v in resolved_vars]
        return fixed + [resolve_value(path, domain) for path, domain in domain_vars]
