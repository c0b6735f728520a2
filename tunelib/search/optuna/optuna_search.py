"""``OptunaSearch``: Optuna's samplers (TPE by default) as a tunelib ``Searcher``, as in Ray.

Example::

    from tunelib.search.optuna import OptunaSearch
    search = OptunaSearch(metric="loss", mode="min")
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search))
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import cloudpickle

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._util import flatten_dict, format_path, unflatten_dict
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
from tunelib.search.variant_generator import parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"
TRAINING_ITERATION = "training_iteration"
DEFINE_BY_RUN_WARN_THRESHOLD_S = 1


def _import_optuna():
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            "OptunaSearch needs the `optuna` package (>= 3.0): pip install 'tunelib[optuna]'"
        ) from exc
    return optuna


class _OptunaTrialSuggestCaptor:
    """Wraps an ``optuna.Trial`` and records what its ``suggest_*`` methods return."""

    def __init__(self, ot_trial) -> None:
        self.ot_trial = ot_trial
        self.captured_values: Dict[str, Any] = {}

    def __getattr__(self, item_name: str) -> Any:
        item = getattr(self.ot_trial, item_name)
        if not (item_name.startswith("suggest_") and callable(item)):
            return item
        sig = inspect.signature(item)

        @functools.wraps(item)
        def wrapper(*args, **kwargs):
            bound = sig.bind_partial(*args, **kwargs)
            ret = item(*args, **kwargs)
            self.captured_values[bound.arguments["name"]] = ret
            return ret

        return wrapper


class OptunaSearch(Searcher):
    """A wrapper around Optuna to provide trial suggestions.

    Args:
        space: Optuna's own space: a dict of ``optuna.distributions`` (keys may be
            ``"a/b"`` paths), or a define-by-run function of an ``optuna.Trial``. Leave it
            None to convert the Tuner's ``param_space``.
        metric: Result key to optimise (a list for multi-objective).
        mode: ``"min"`` or ``"max"`` (a list for multi-objective).
        points_to_evaluate: Configs to try first.
        sampler: An ``optuna.samplers.BaseSampler``; default ``TPESampler(seed=seed)``.
        study_name: Optuna study name (default ``"optuna"``).
        storage: An ``optuna.storages.BaseStorage``; default in-memory.
        seed: Seed for the default sampler.
        evaluated_rewards: Rewards of ``points_to_evaluate``, already known (they are
            then told to Optuna, not run again).

    Example::

        space = {"a": optuna.distributions.FloatDistribution(6, 8),
                 "b": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
        search = OptunaSearch(space, metric="loss", mode="min",
                              points_to_evaluate=[{"a": 6.5, "b": 5e-4}])
    """

    def __init__(
        self,
        space: Optional[
            Union[Dict[str, Any], List[Tuple], Callable[[Any], Optional[Dict[str, Any]]]]
        ] = None,
        metric: Optional[Union[str, List[str]]] = None,
        mode: Optional[Union[str, List[str]]] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        sampler: Optional[Any] = None,
        study_name: Optional[str] = None,
        storage: Optional[Any] = None,
        seed: Optional[int] = None,
        evaluated_rewards: Optional[List] = None,
    ):
        ot = _import_optuna()
        super().__init__(metric=metric, mode=mode)
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
            else:
                space = flatten_dict(space, "/")
        self._space = space
        _validate_warmstart(points_to_evaluate, evaluated_rewards)
        self._points_to_evaluate = [flatten_dict(p, "/") for p in points_to_evaluate or []]
        self._evaluated_rewards = evaluated_rewards
        self._study_name = study_name or "optuna"
        if sampler is not None and seed is not None:
            logger.warning(
                "You passed an initialized sampler to `OptunaSearch`. The `seed` parameter "
                "has to be passed to the sampler directly and will be ignored."
            )
        if sampler is not None and not isinstance(sampler, ot.samplers.BaseSampler):
            raise TypeError(f"`sampler` must be an optuna.samplers.BaseSampler, got {sampler!r}")
        if storage is not None and not isinstance(storage, ot.storages.BaseStorage):
            raise TypeError(f"`storage` must be an optuna.storages.BaseStorage, got {storage!r}")
        self._sampler = sampler
        self._seed = seed
        self._storage = storage
        self._completed_trials = set()
        self._ot_trials = {}
        self._ot_study = None
        if self._space:
            self._setup_study(mode)

    def _setup_study(self, mode: Union[str, list, None]):
        ot = _import_optuna()
        if self._metric is None and self._mode:
            if isinstance(self._mode, list):
                raise ValueError(
                    "If ``mode`` is a list (multi-objective optimization case), ``metric`` "
                    "must be defined."
                )
            self._metric = DEFAULT_METRIC
        sampler = self._sampler or ot.samplers.TPESampler(seed=self._seed)
        if isinstance(mode, list):
            direction_args = dict(
                directions=["minimize" if m == "min" else "maximize" for m in mode]
            )
        else:
            direction_args = dict(direction="minimize" if mode == "min" else "maximize")
        self._ot_study = ot.study.create_study(
            storage=self._storage,
            sampler=sampler,
            pruner=ot.pruners.NopPruner(),
            study_name=self._study_name,
            load_if_exists=True,
            **direction_args,
        )
        if self._points_to_evaluate:
            if not callable(self._space):
                for point in self._points_to_evaluate:
                    if len(point) != len(self._space):
                        raise ValueError(
                            f"points_to_evaluate: point {point} must set every parameter of "
                            f"the space {sorted(self._space)}"
                        )
            if self._evaluated_rewards:
                for point, reward in zip(self._points_to_evaluate, self._evaluated_rewards):
                    self.add_evaluated_point(point, reward)
            else:
                for point in self._points_to_evaluate:
                    self._ot_study.enqueue_trial(point)

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
        self._setup_study(self._mode)
        return True

    def _suggest_from_define_by_run_func(self, func: Callable, ot_trial) -> Dict:
        captor = _OptunaTrialSuggestCaptor(ot_trial)
        start = time.time()
        ret = func(captor)
        if time.time() - start > DEFINE_BY_RUN_WARN_THRESHOLD_S:
            warnings.warn(
                "Define-by-run function passed in the `space` argument took "
                f"{time.time() - start} seconds to run. Put computation and training in "
                "the trainable, not in the search space definition.",
                stacklevel=2,
            )
        if ret is not None:
            if not isinstance(ret, dict) or not all(isinstance(k, str) for k in ret):
                raise TypeError(
                    "The define-by-run function passed in `space` must return None or a "
                    f"dict with str keys, got {type(ret).__name__}."
                )
            return {**captor.captured_values, **ret}
        return captor.captured_values

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(self._space)
        if callable(self._space):
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask()
            params = self._suggest_from_define_by_run_func(self._space, self._ot_trials[trial_id])
        else:
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask(fixed_distributions=self._space)
            params = self._ot_trials[trial_id].params
        return unflatten_dict(params)

    def on_trial_result(self, trial_id: str, result: Dict):
        if isinstance(self.metric, list):
            return  # Optuna has no intermediate values for multi-objective studies
        if trial_id in self._completed_trials:
            logger.warning(
                f"Received additional result for trial {trial_id}, but it already finished."
            )
            return
        if self.metric not in result or TRAINING_ITERATION not in result:
            return
        self._ot_trials[trial_id].report(result[self.metric], result[TRAINING_ITERATION])

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        ot = _import_optuna()
        if trial_id in self._completed_trials:
            logger.warning(
                f"Received additional completion for trial {trial_id}, but it already finished."
            )
            return
        ot_trial = self._ot_trials[trial_id]
        val = None
        if result:
            if isinstance(self.metric, list):
                val = [result.get(m, None) for m in self.metric]
            else:
                val = result.get(self.metric, None)
        state = ot.trial.TrialState.COMPLETE
        if val is None:
            state = ot.trial.TrialState.FAIL if error else ot.trial.TrialState.PRUNED
        try:
            self._ot_study.tell(ot_trial, val, state=state)
        except Exception as exc:  # e.g. NaN reported
            logger.warning(exc)
        self._completed_trials.add(trial_id)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ):
        ot = _import_optuna()
        self._require_space_and_metric(self._space)
        if callable(self._space):
            raise TypeError(
                "A define-by-run `space` does not support `evaluated_rewards`; pass a dict of "
                "optuna distributions or a tunelib search space instead."
            )
        state = ot.trial.TrialState.COMPLETE
        if error:
            state, value = ot.trial.TrialState.FAIL, None
        elif pruned:
            state = ot.trial.TrialState.PRUNED
        trial = ot.trial.create_trial(
            state=state,
            value=value,
            params=flatten_dict(parameters, "/"),
            distributions=self._space,
            intermediate_values=dict(enumerate(intermediate_values))
            if intermediate_values
            else None,
        )
        self._ot_study.add_trial(trial)

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> Dict[str, Any]:
        """Convert a tunelib param space to ``{"a/b": optuna distribution}``.

        Raises ``ValueError`` naming the parameter for what Optuna cannot express
        (grid_search, sample_from, randn).

        Example::

            OptunaSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1)})
            # {'lr': FloatDistribution(high=0.1, log=True, low=0.0001, step=None)}
        """
        ot = _import_optuna()
        _, domain_vars, grid_vars = parse_spec_vars(spec)
        if grid_vars:
            raise ValueError(
                f"{format_path(grid_vars[0][0])}: grid_search cannot be converted to an Optuna "
                "search space; use tune.choice([...]) with OptunaSearch (Optuna supports "
                "uniform, loguniform, quniform, randint, qrandint, lograndint and choice)."
            )

        def resolve_value(path: Tuple, domain: Domain):
            quantize = None
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                quantize, sampler = sampler.q, sampler.sampler
            if isinstance(domain, Float):
                if isinstance(sampler, LogUniform):
                    if quantize:
                        logger.warning(
                            "Optuna does not support both quantization and sampling from "
                            f"LogUniform; dropped quantization of {format_path(path)}."
                        )
                    return ot.distributions.FloatDistribution(domain.lower, domain.upper, log=True)
                if isinstance(sampler, Uniform):
                    return ot.distributions.FloatDistribution(
                        domain.lower, domain.upper, step=quantize
                    )
            elif isinstance(domain, Integer):
                if isinstance(sampler, LogUniform):
                    return ot.distributions.IntDistribution(
                        domain.lower, domain.upper - 1, step=quantize or 1, log=True
                    )
                if isinstance(sampler, Uniform):
                    # upper is inclusive when quantized, exclusive otherwise
                    return ot.distributions.IntDistribution(
                        domain.lower, domain.upper - int(not quantize), step=quantize or 1
                    )
            elif isinstance(domain, Categorical) and isinstance(sampler, Uniform):
                return ot.distributions.CategoricalDistribution(domain.categories)
            kind = "sample_from" if domain.is_function() else f"{type(domain).__name__}/{sampler}"
            raise ValueError(
                f"{format_path(path)}: Optuna search does not support `{kind}` parameters; "
                "allowed: tune.uniform, quniform, loguniform, randint, qrandint, lograndint, "
                "qlograndint, choice (or pass optuna distributions as `space`)."
            )

        for path, _ in domain_vars:
            for piece in path:
                if "/" in str(piece):
                    raise ValueError(
                        f"{format_path(path)}: parameter names must not contain '/' "
                        "with OptunaSearch"
                    )
        return {"/".join(str(p) for p in path): resolve_value(path, d) for path, d in domain_vars}


def _validate_warmstart(points_to_evaluate, evaluated_rewards) -> None:
    if points_to_evaluate is not None:
        if not isinstance(points_to_evaluate, list):
            raise TypeError(
                "`points_to_evaluate` expected to be a list, got "
                f"{type(points_to_evaluate).__name__}."
            )
        for point in points_to_evaluate:
            if not isinstance(point, dict):
                raise TypeError(f"`points_to_evaluate` expected to hold dicts, got {point!r}.")
    if points_to_evaluate and evaluated_rewards:
        if not isinstance(evaluated_rewards, list) or len(evaluated_rewards) != len(
            points_to_evaluate
        ):
            raise ValueError(
                "`evaluated_rewards` must be a list as long as `points_to_evaluate` "
                f"({len(points_to_evaluate)}), got {evaluated_rewards!r}"
            )
