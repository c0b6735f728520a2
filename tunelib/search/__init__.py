"""Search spaces and search algorithms: Ray's ``ray.tune.search``, engine-independent.

This package (every submodule included) is also ``tunelib.tune.search``, Ray's path.

Example::

    from tunelib.tune.search.optuna import OptunaSearch   # or tunelib.search.optuna
    from tunelib.search import BasicVariantGenerator, ConcurrencyLimiter, as_search_algorithm

    alg = as_search_algorithm(ConcurrencyLimiter(OptunaSearch(), max_concurrent=4))
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

UNRESOLVED_SEARCH_SPACE = str(
    "You passed a `{par}` parameter to {cls} that contained unresolved search "
    "space definitions. {cls} should however be instantiated with fully "
    "configured search spaces only. To use Ray Tune's automatic search space "
    "conversion, pass the space definition as part of the `param_space` argument "
    "to `tune.Tuner()` instead."
)

UNDEFINED_SEARCH_SPACE = str(
    "Trying to sample a configuration from {cls}, but no search "
    "space has been defined. Either pass the `{space}` argument when "
    "instantiating the search algorithm, or pass a `param_space` to "
    "`tune.Tuner()`."
)

UNDEFINED_METRIC_MODE = str(
    "Trying to sample a configuration from {cls}, but the `metric` "
    "({metric}) or `mode` ({mode}) parameters have not been set. "
    "Either pass these arguments when instantiating the search algorithm, "
    "or pass them to `tune.TuneConfig()`."
)

from tunelib.search.basic_variant import BasicVariantGenerator  # noqa: E402
from tunelib.search.concurrency_limiter import ConcurrencyLimiter  # noqa: E402
from tunelib.search.repeater import Repeater  # noqa: E402
from tunelib.search.search_algorithm import SearchAlgorithm, Suggestion  # noqa: E402
from tunelib.search.search_generator import SearchGenerator  # noqa: E402
from tunelib.search.searcher import Searcher  # noqa: E402
from tunelib.search.variant_generator import grid_search  # noqa: E402


def _import_variant_generator():
    return BasicVariantGenerator


def _import_optuna_search():
    from tunelib.search.optuna import OptunaSearch

    return OptunaSearch


def _import_hyperopt_search():
    from tunelib.search.hyperopt import HyperOptSearch

    return HyperOptSearch


def _import_ax_search():
    from tunelib.search.ax import AxSearch

    return AxSearch


def _import_bayesopt_search():
    from tunelib.search.bayesopt import BayesOptSearch

    return BayesOptSearch


def _import_bohb_search():
    from tunelib.search.bohb import TuneBOHB

    return TuneBOHB


def _import_nevergrad_search():
    from tunelib.search.nevergrad import NevergradSearch

    return NevergradSearch


def _import_zoopt_search():
    from tunelib.search.zoopt import ZOOptSearch

    return ZOOptSearch


SEARCH_ALG_IMPORT = {
    "variant_generator": _import_variant_generator,
    "random": _import_variant_generator,
    "ax": _import_ax_search,
    "bayesopt": _import_bayesopt_search,
    "bohb": _import_bohb_search,
    "hyperopt": _import_hyperopt_search,
    "nevergrad": _import_nevergrad_search,
    "optuna": _import_optuna_search,
    "zoopt": _import_zoopt_search,
}
# Ray has these too; tunelib does not implement them (yet): their libraries could not be
# installed or tested here (tunelib.search.hebo raises when created).
_NOT_IMPLEMENTED = ("hebo",)


def create_searcher(search_alg: str, **kwargs):
    """Instantiate a search algorithm from its name; kwargs it does not take are dropped.

    Names: ``"variant_generator"``/``"random"``, ``"optuna"``, ``"hyperopt"``, ``"ax"``,
    ``"bayesopt"``, ``"bohb"``, ``"nevergrad"``, ``"zoopt"``.

    Example::

        search_alg = tune.create_searcher("optuna", metric="loss", mode="min")
    """
    name = search_alg.lower() if isinstance(search_alg, str) else search_alg
    if name not in SEARCH_ALG_IMPORT:
        hint = " (available in Ray, not implemented in tunelib)" if name in _NOT_IMPLEMENTED else ""
        raise ValueError(
            f"The `search_alg` argument must be one of {list(SEARCH_ALG_IMPORT)}. "
            f"Got: {search_alg!r}{hint}"
        )
    cls = SEARCH_ALG_IMPORT[name]()
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


def as_search_algorithm(
    search_alg: Any, max_concurrent_trials: Optional[int] = None
) -> SearchAlgorithm:
    """Normalise ``search_alg`` into a :class:`SearchAlgorithm`, as ``tune.run`` does.

    None -> ``BasicVariantGenerator()``; a ``Searcher`` -> ``SearchGenerator(searcher)``;
    a ``SearchAlgorithm`` -> itself; a str -> :func:`create_searcher`. With
    ``max_concurrent_trials``, a Searcher is wrapped in a ``ConcurrencyLimiter`` (or the
    default generator gets ``max_concurrent``), as Ray does.

    Example::

        as_search_algorithm(None)                       # BasicVariantGenerator
        as_search_algorithm(OptunaSearch(), max_concurrent_trials=2)
    """
    if max_concurrent_trials is not None and (
        isinstance(max_concurrent_trials, bool)
        or not isinstance(max_concurrent_trials, int)
        or max_concurrent_trials < 0
    ):
        raise ValueError(
            f"`max_concurrent_trials` must be an int >= 1 (or None), got {max_concurrent_trials!r}"
        )
    if isinstance(search_alg, str):
        search_alg = create_searcher(search_alg)
    if search_alg is None:
        return BasicVariantGenerator(max_concurrent=max_concurrent_trials or 0)
    if max_concurrent_trials:
        if isinstance(search_alg, ConcurrencyLimiter):
            if search_alg.max_concurrent != max_concurrent_trials:
                raise ValueError(
                    f"You have specified `max_concurrent_trials={max_concurrent_trials}`, but "
                    "the `search_alg` is already a `ConcurrencyLimiter` with "
                    f"`max_concurrent={search_alg.max_concurrent}`. FIX THIS by setting "
                    "`max_concurrent_trials=None`."
                )
        elif isinstance(search_alg, Searcher):
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=max_concurrent_trials)
        elif isinstance(search_alg, BasicVariantGenerator) and not search_alg.max_concurrent:
            search_alg.max_concurrent = max_concurrent_trials
    if isinstance(search_alg, Searcher):
        return SearchGenerator(search_alg)
    if isinstance(search_alg, SearchAlgorithm):
        return search_alg
    raise TypeError(
        "`search_alg` must be None, a tunelib Searcher (e.g. OptunaSearch), a "
        f"SearchAlgorithm (e.g. BasicVariantGenerator) or a name; got {type(search_alg).__name__}: "
        f"{search_alg!r}"
    )


__all__ = [
    "SearchAlgorithm",
    "Searcher",
    "ConcurrencyLimiter",
    "Repeater",
    "BasicVariantGenerator",
    "grid_search",
    "SearchGenerator",
    "UNRESOLVED_SEARCH_SPACE",
    "UNDEFINED_SEARCH_SPACE",
    "UNDEFINED_METRIC_MODE",
    "Suggestion",
    "as_search_algorithm",
    "create_searcher",
]
