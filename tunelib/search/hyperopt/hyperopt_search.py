"""``HyperOptSearch``: HyperOpt's TPE as a tunelib ``Searcher``, as in Ray.

Example::

    from tunelib.search.hyperopt import HyperOptSearch
    search = HyperOptSearch(metric="loss", mode="min")
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(search_alg=search))
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from typing import Any, Dict, List, Optional

import cloudpickle
import numpy as np

from tunelib.search import UNDEFINED_SEARCH_SPACE, UNRESOLVED_SEARCH_SPACE
from tunelib.search._util import flatten_dict, format_path
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
from tunelib.search.variant_generator import assign_value, parse_spec_vars

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "_metric"
HYPEROPT_UNDEFINED_DETAILS = (
    " This issue can also come up with HyperOpt if your search space only contains "
    "constant variables, which is not supported by HyperOpt. In that case, don't pass any "
    "searcher or add sample variables to the search space."
)


def _import_hyperopt():
    try:
        logging.getLogger("hyperopt").setLevel(logging.WARNING)
        import hyperopt
        import hyperopt.fmin
        import hyperopt.pyll
    except ImportError as exc:
        raise ImportError(
            "HyperOptSearch needs the `hyperopt` package: pip install 'tunelib[hyperopt]'"
        ) from exc
    return hyperopt


class HyperOptSearch(Searcher):
    """A wrapper around HyperOpt (Tree-structured Parzen Estimators) for suggestions.

    Args:
        space: HyperOpt's own space (a dict of ``hp.*`` expressions); leave None to convert
            the Tuner's ``param_space``.
        metric: Result key to optimise; ``_metric`` if only ``mode`` is given.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first (categorical values given as values).
        n_initial_points: Random evaluations before TPE takes over.
        random_state_seed: Seed for reproducible suggestions.
        gamma: TPE's gamma.

    Example::

        space = {"width": hp.uniform("width", 0, 20),
                 "activation": hp.choice("activation", ["relu", "tanh"])}
        search = HyperOptSearch(space, metric="mean_loss", mode="min",
                                points_to_evaluate=[{"width": 10, "activation": "relu"}])
    """

    def __init__(
        self,
        space: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        n_initial_points: int = 20,
        random_state_seed: Optional[int] = None,
        gamma: float = 0.25,
    ):
        hpo = _import_hyperopt()
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.metric_op = -1.0 if mode == "max" else 1.0  # hyperopt minimises
        self.algo = hpo.tpe.suggest
        if n_initial_points is not None:
            self.algo = partial(self.algo, n_startup_jobs=n_initial_points)
        if gamma is not None:
            self.algo = partial(self.algo, gamma=gamma)
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise TypeError(
                f"`points_to_evaluate` must be a list of dicts, got {points_to_evaluate!r}"
            )
        self._points_to_evaluate = copy.deepcopy(points_to_evaluate)
        self._live_trial_mapping = {}
        self.rstate = np.random.RandomState(random_state_seed)
        self.domain = None
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
            self._space = space
            self._setup_hyperopt()

    def _setup_hyperopt(self) -> None:
        hpo = _import_hyperopt()
        from hyperopt.fmin import generate_trials_to_calculate

        if not self._space:
            raise RuntimeError(
                UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space")
                + HYPEROPT_UNDEFINED_DETAILS
            )
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        if self._points_to_evaluate is None:
            self._hpopt_trials = hpo.Trials()
            self._points_to_evaluate = 0
        else:
            for config in self._points_to_evaluate:
                self._convert_categories_to_indices(config)
            # hyperopt labels nested parameters "a/b"; it takes initial points
            # last-in-first-out, so reverse them to keep the user's order
            points = [flatten_dict(p, "/") for p in reversed(self._points_to_evaluate)]
            self._hpopt_trials = generate_trials_to_calculate(points)
            self._hpopt_trials.refresh()
            self._points_to_evaluate = len(points)
        self.domain = hpo.Domain(lambda spc: spc, self._space)

    def _convert_categories_to_indices(self, config) -> None:
        """hyperopt expects the index of a ``hp.choice`` category; users give the value."""
        hpo = _import_hyperopt()

        def _lookup(config_dict, space_dict, key):
            if isinstance(config_dict[key], dict):
                for k in config_dict[key]:
                    _lookup(config_dict[key], space_dict[key], k)
            elif (
                key in space_dict
                and isinstance(space_dict[key], hpo.pyll.Apply)
                and space_dict[key].name == "switch"
                and len(space_dict[key].pos_args) > 0
            ):
                categories = [a.obj for a in space_dict[key].pos_args[1:] if a.name == "literal"]
                try:
                    config_dict[key] = categories.index(config_dict[key])
                except ValueError as exc:
                    raise ValueError(
                        f"points_to_evaluate: `{config_dict[key]}` is not a category of "
                        f"parameter `{key}`; allowed: {categories}"
                    ) from exc

        for k in config:
            _lookup(config, self._space, k)

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        if self.domain:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self.metric_op = -1.0 if self._mode == "max" else 1.0
        self._setup_hyperopt()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        hpo = _import_hyperopt()
        self._require_space_and_metric(self.domain, HYPEROPT_UNDEFINED_DETAILS)
        if self._points_to_evaluate > 0:
            using_point = True
            new_trial = self._hpopt_trials.trials[self._points_to_evaluate - 1]
            self._points_to_evaluate -= 1
        else:
            using_point = False
            new_ids = self._hpopt_trials.new_trial_ids(1)
            self._hpopt_trials.refresh()
            new_trials = self.algo(
                new_ids, self.domain, self._hpopt_trials, self.rstate.randint(2**31 - 1)
            )
            self._hpopt_trials.insert_trial_docs(new_trials)
            self._hpopt_trials.refresh()
            new_trial = new_trials[0]
        self._live_trial_mapping[trial_id] = (new_trial["tid"], new_trial)

        # as hyperopt.base.evaluate does
        config = hpo.base.spec_from_misc(new_trial["misc"])
        config = flatten_dict(config, flatten_list=True)
        ctrl = hpo.base.Ctrl(self._hpopt_trials, current_trial=new_trial)
        memo = self.domain.memo_from_config(config)
        hpo.utils.use_obj_for_literal_in_memo(self.domain.expr, ctrl, hpo.base.Ctrl, memo)
        try:
            suggested = hpo.pyll.rec_eval(
                self.domain.expr,
                memo=memo,
                print_node_on_error=self.domain.rec_eval_print_node_on_error,
            )
        except (AssertionError, TypeError) as exc:
            if using_point and (isinstance(exc, AssertionError) or "GarbageCollected" in str(exc)):
                raise ValueError(
                    "HyperOpt could not evaluate a config of `points_to_evaluate`: it must set "
                    f"every non-constant key of `space`. Config: {config}; space: {self._space}"
                ) from exc
            raise
        return copy.deepcopy(suggested)

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        hpo = _import_hyperopt()
        ho_trial = self._get_hyperopt_trial(trial_id)
        if ho_trial is None:
            return
        now = hpo.utils.coarse_utcnow()
        ho_trial["book_time"] = now
        ho_trial["refresh_time"] = now

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        """Tell hyperopt the trial's (sign-adjusted) metric; hyperopt minimises."""
        hpo = _import_hyperopt()
        ho_trial = self._get_hyperopt_trial(trial_id)
        if ho_trial is None:
            return
        ho_trial["refresh_time"] = hpo.utils.coarse_utcnow()
        if error:
            ho_trial["state"] = hpo.base.JOB_STATE_ERROR
            ho_trial["misc"]["error"] = ("TuneError", "Tune Error")
            self._hpopt_trials.refresh()
        elif result:
            if self.metric not in result:
                raise RuntimeError(
                    f"Hyperopt expected to see the metric `{self.metric}` in the last result, "
                    "but it was not found. Make sure your trainable reports it."
                )
            ho_trial["state"] = hpo.base.JOB_STATE_DONE
            ho_trial["result"] = {"loss": self.metric_op * result[self.metric], "status": "ok"}
            self._hpopt_trials.refresh()
        del self._live_trial_mapping[trial_id]

    def _get_hyperopt_trial(self, trial_id: str) -> Optional[Dict]:
        if trial_id not in self._live_trial_mapping:
            return None
        tid = self._live_trial_mapping[trial_id][0]
        return [t for t in self._hpopt_trials.trials if t["tid"] == tid][0]

    def get_state(self) -> Dict:
        return {"hyperopt_trials": self._hpopt_trials, "rstate": self.rstate.get_state()}

    def set_state(self, state: Dict) -> None:
        self._hpopt_trials = state["hyperopt_trials"]
        self.rstate.set_state(state["rstate"])

    def save(self, checkpoint_path: str) -> None:
        save_object = self.__dict__.copy()
        save_object["__rstate"] = self.rstate.get_state()
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(save_object, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            save_object = cloudpickle.load(f)
        self.rstate.set_state(save_object.pop("__rstate"))
        self.__dict__.update(save_object)

    @staticmethod
    def convert_search_space(spec: Dict, prefix: str = "") -> Dict:
        """Convert a tunelib param space to a HyperOpt space (a dict of ``hp.*`` nodes).

        Example::

            HyperOptSearch.convert_search_space({"x": tune.uniform(0, 1)})
        """
        hpo = _import_hyperopt()
        spec = copy.deepcopy(spec)
        _, domain_vars, grid_vars = parse_spec_vars(spec)
        if not domain_vars and not grid_vars:
            return {}
        if grid_vars:
            raise ValueError(
                f"{format_path(grid_vars[0][0])}: grid_search cannot be converted to a "
                "HyperOpt search space; use tune.choice([...]) with HyperOptSearch."
            )

        def resolve_value(par: str, domain: Domain) -> Any:
            quantize = None
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                quantize, sampler = sampler.q, sampler.sampler
            hp, to_int = hpo.hp, hpo.pyll.scope.int
            if isinstance(domain, Float):
                if isinstance(sampler, LogUniform):
                    lo, hi = np.log(domain.lower), np.log(domain.upper)
                    return (
                        hp.qloguniform(par, lo, hi, quantize)
                        if quantize
                        else hp.loguniform(par, lo, hi)
                    )
                if isinstance(sampler, Uniform):
                    lo, hi = domain.lower, domain.upper
                    return (
                        hp.quniform(par, lo, hi, quantize) if quantize else hp.uniform(par, lo, hi)
                    )
                if isinstance(sampler, Normal):
                    if quantize:
                        return hp.qnormal(par, sampler.mean, sampler.sd, quantize)
                    return hp.normal(par, sampler.mean, sampler.sd)
            elif isinstance(domain, Integer):
                if isinstance(sampler, LogUniform):
                    lo = np.log(domain.lower)
                    if quantize:
                        return to_int(hp.qloguniform(par, lo, np.log(domain.upper), quantize))
                    return to_int(hp.qloguniform(par, lo, np.log(domain.upper - 1), 1.0))
                if isinstance(sampler, Uniform):
                    if quantize:
                        return to_int(hp.quniform(par, domain.lower, domain.upper - 1, quantize))
                    return hp.uniformint(par, domain.lower, high=domain.upper - 1)
            elif isinstance(domain, Categorical) and isinstance(sampler, Uniform):
                seq = []
                for i, category in enumerate(domain.categories):
                    if isinstance(category, dict):
                        seq.append(
                            HyperOptSearch.convert_search_space(category, prefix=par) or category
                        )
                    elif (
                        isinstance(category, list) and category and isinstance(category[0], Domain)
                    ):
                        seq.append(
                            HyperOptSearch.convert_search_space(
                                dict(enumerate(category)), prefix=f"{par}/{i}"
                            )
                        )
                    elif isinstance(category, Domain):
                        seq.append(resolve_value(f"{par}/{i}", category))
                    else:
                        seq.append(category)
                return hp.choice(par, seq)
            kind = "sample_from" if domain.is_function() else f"{type(domain).__name__}/{sampler}"
            raise ValueError(
                f"{format_path(tuple(par.split('/')))}: HyperOpt does not support `{kind}` "
                "parameters; allowed: tune.uniform, quniform, loguniform, qloguniform, randn, "
                "qrandn, randint, qrandint, lograndint, qlograndint, choice."
            )

        for path, domain in domain_vars:
            par = "/".join(str(p) for p in ((prefix,) + path if prefix else path))
            assign_value(spec, path, resolve_value(par, domain))
        return spec
