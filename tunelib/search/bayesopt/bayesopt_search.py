"""``BayesOptSearch``: bayesian-optimization's GP as a tunelib ``Searcher``, as in Ray.

Example::

    from tunelib.search.bayesopt import BayesOptSearch
    search = BayesOptSearch(metric="loss", mode="min")
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search))
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

from tunelib.search import UNRESOLVED_SEARCH_SPACE
from tunelib.search._flat_path import flat_path_label
from tunelib.search._util import flatten_dict, unflatten_dict
from tunelib.search.domain import Domain, Float, Quantized, Uniform
from tunelib.search.searcher import Searcher
from tunelib.search.variant_generator import flat_spec_vars, parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"


def _import_bayes_opt():
    try:
        import bayes_opt
    except ImportError as exc:
        raise ImportError(
            "BayesOpt must be installed!. You can install BayesOpt with the command: "
            "`pip install bayesian-optimization==1.4.3` (or pip install 'tunelib[bayesopt]')."
        ) from exc
    return bayes_opt


def _dict_hash(config: Dict, precision: int) -> str:
    """A key for ``config`` with floats rounded to ``precision`` digits (duplicate check)."""
    flat = flatten_dict(config)
    for param, value in flat.items():
        if isinstance(value, float):
            flat[param] = "{:.{digits}f}".format(value, digits=precision)
    return json.dumps(flat, sort_keys=True, default=str)


def _is_nan_or_inf(value: Any) -> bool:
    try:
        return math.isnan(value) or math.isinf(value)
    except TypeError:
        return False


class BayesOptSearch(Searcher):
    """Bayesian optimisation (a GP, ``bayes_opt``) over continuous parameters, as Ray's.

    NaN and infinite results are not told to the GP. The first ``random_search_steps``
    trials are random; their results are told together once all have finished.

    Args:
        space: ``{name: (low, high)}`` (``bayes_opt``'s format); leave None to convert the
            Tuner's ``param_space`` (only ``tune.uniform``-like floats).
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first.
        utility_kwargs: ``bayes_opt.UtilityFunction`` arguments (default UCB, kappa 2.576).
        random_state: Seed of the optimizer.
        random_search_steps: Random trials before the GP takes over.
        verbose: ``bayes_opt`` verbosity.
        patience: Stop (``Searcher.FINISHED``) once a config was suggested this many times.
        skip_duplicate: Skip configs already suggested (returns None for that call).
        analysis: An ExperimentAnalysis whose results are told to the GP first.
        repeat_float_precision: Digits compared when checking for duplicates.

    Example::

        search = BayesOptSearch({"width": (0, 20), "height": (-100, 100)},
                                metric="mean_loss", mode="min", random_state=7)
    """

    optimizer = None

    def __init__(
        self,
        space: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        utility_kwargs: Optional[Dict] = None,
        random_state: int = 42,
        random_search_steps: int = 10,
        verbose: int = 0,
        patience: int = 5,
        skip_duplicate: bool = True,
        analysis: Optional[Any] = None,
        repeat_float_precision: int = 5,
    ):
        byo = _import_bayes_opt()
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        if isinstance(repeat_float_precision, bool) or not isinstance(repeat_float_precision, int):
            raise TypeError("repeat_float_precision must be an integer.")
        if repeat_float_precision < 0:
            raise ValueError("repeat_float_precision must be non-negative.")
        if patience <= 0:
            raise ValueError("patience must be set to a value greater than 0!")
        super().__init__(metric=metric, mode=mode)
        self._config_counter = defaultdict(int)
        self._patience = patience
        self.repeat_float_precision = repeat_float_precision
        self._skip_duplicate = skip_duplicate
        self._logged_duplicate_warning = False
        self._logged_convergence_stop_warning = False
        if utility_kwargs is None:
            utility_kwargs = dict(kind="ucb", kappa=2.576, xi=0.0)  # bayes_opt's defaults
        self._metric_op = {"max": 1.0, "min": -1.0}.get(mode)
        self._points_to_evaluate = points_to_evaluate
        self._live_trial_mapping: Dict[str, Dict] = {}
        self._buffered_trial_results: List[Tuple[Dict, Dict]] = []
        self.random_search_trials = random_search_steps
        self._total_random_search_trials = 0
        self.utility = byo.UtilityFunction(**utility_kwargs)
        self._analysis = analysis
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space, join=True)
        self._space = space
        self._verbose = verbose
        self._random_state = random_state
        self.optimizer = None
        if space:
            self._setup_optimizer()

    def _setup_optimizer(self) -> None:
        byo = _import_bayes_opt()
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        self.optimizer = byo.BayesianOptimization(
            f=None, pbounds=self._space, verbose=self._verbose, random_state=self._random_state
        )
        if self._analysis is not None:
            self.register_analysis(self._analysis)

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self.optimizer:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._metric_op = {"max": 1.0, "min": -1.0}.get(self._mode)
        self._setup_optimizer()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_metric(self.optimizer is not None)
        if self._points_to_evaluate:
            config = self._points_to_evaluate.pop(0)
        else:
            config = self.optimizer.suggest(self.utility)
        config_hash = _dict_hash(config, self.repeat_float_precision)
        already_seen = config_hash in self._config_counter
        self._config_counter[config_hash] += 1
        if self._patience is not None and max(self._config_counter.values()) > self._patience:
            if not self._logged_convergence_stop_warning:
                logger.warning(
                    "BayesOptSearch is stopping early: a configuration was suggested more "
                    "than `patience` (%d) times, which usually means the search has "
                    "converged. No further trials will be suggested. To run more trials, "
                    "increase `patience`, set `skip_duplicate=False`, or widen the search "
                    "space.",
                    self._patience,
                )
                self._logged_convergence_stop_warning = True
            return Searcher.FINISHED
        if already_seen and self._skip_duplicate:
            if not self._logged_duplicate_warning:
                logger.warning(
                    "BayesOptSearch is re-suggesting already-evaluated configurations (the "
                    "Gaussian Process has likely converged). Duplicates are being skipped; if "
                    "a configuration repeats more than `patience` (%d) times the search will "
                    "stop early. Set `skip_duplicate=False`, increase `patience`, or widen "
                    "the search space to keep exploring.",
                    self._patience,
                )
                self._logged_duplicate_warning = True
            logger.info("Skipping duplicated config: %s.", config)
            return None
        # while random trials are still out, wait rather than exceed their number
        if len(self._buffered_trial_results) < self.random_search_trials:
            if self._total_random_search_trials == self.random_search_trials:
                return None
            if config:
                self._total_random_search_trials += 1
        self._live_trial_mapping[trial_id] = config
        return unflatten_dict(config)

    def register_analysis(self, analysis: Any) -> None:
        """Tell the GP the results of a previous ``ExperimentAnalysis``.

        Example::

            search.register_analysis(tune.ExperimentAnalysis("~/tunelib_results/exp"))
        """
        for (_, report), params in zip(
            analysis.dataframe(metric=self._metric, mode=self._mode).iterrows(),
            analysis.get_all_configs().values(),
        ):
            self._register_result(params, report)

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        params = self._live_trial_mapping.pop(trial_id, None)
        if result is None or params is None or error:
            return
        if len(self._buffered_trial_results) >= self.random_search_trials:
            self._register_result(params, result)
            return
        self._buffered_trial_results.append((params, result))
        if len(self._buffered_trial_results) == self.random_search_trials:
            for buffered_params, buffered_result in self._buffered_trial_results:
                self._register_result(buffered_params, buffered_result)

    def _register_result(self, params: Dict, result: Dict) -> None:
        if _is_nan_or_inf(result[self.metric]):
            return
        self.optimizer.register(params, self._metric_op * result[self.metric])

    def get_state(self) -> Dict[str, Any]:
        return self.__dict__.copy()

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        if isinstance(state, dict):
            self.set_state(state)
        else:  # Ray's older format: a tuple
            (
                self.optimizer,
                self._buffered_trial_results,
                self._total_random_search_trials,
                self._config_counter,
                self._points_to_evaluate,
            ) = state

    @staticmethod
    def convert_search_space(spec: Dict, join: bool = False) -> Dict:
        """Convert a tunelib param space to ``{"a/b": (low, high)}`` (floats only).

        Example::

            BayesOptSearch.convert_search_space({"x": tune.uniform(0, 1)})  # {'x': (0, 1)}
        """
        _, domain_vars, _ = flat_spec_vars(spec, "a BayesOpt search space")

        def resolve_value(path: Tuple, domain: Domain) -> Tuple[float, float]:
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                logger.warning("BayesOpt search does not support quantization. Dropped quantization.")
                sampler = sampler.get_sampler()
            if isinstance(domain, Float):
                if domain.sampler is not None and not isinstance(domain.sampler, Uniform):
                    logger.warning(
                        "BayesOpt does not support specific sampling methods. The %s sampler "
                        "will be dropped.",
                        sampler,
                    )
                return (domain.lower, domain.upper)
            raise ValueError(
                f"{flat_path_label(path)}: BayesOpt does not support parameters of type "
                f"`{type(domain).__name__}`; use tune.uniform / tune.loguniform floats."
            )

        bounds = {"/".join(path): resolve_value(path, domain) for path, domain in domain_vars}
        if join:
            spec.update(bounds)
            bounds = spec
        return bounds
