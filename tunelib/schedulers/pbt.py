"""Population Based Training: bottom trials clone top trials and perturb their config."""

from __future__ import annotations

import bisect
import copy
import itertools
import logging
import math
import random
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from tunelib.error import TuneError
from tunelib.schedulers import _util
from tunelib.schedulers.trial_scheduler import FIFOScheduler, SchedulerController, TrialScheduler
from tunelib.trial import PAUSED, PENDING, RUNNING, Trial

logger = logging.getLogger(__name__)


def _is_domain(obj: Any) -> bool:
    # tunelib.search.sample.Domain and Ray's Domain both sample with `.sample()`.
    return callable(getattr(obj, "sample", None))


def _is_sample_from(obj: Any) -> bool:
    # `tune.sample_from(fn)` is a Domain subclass named Function; PBT cannot perturb it.
    return _is_domain(obj) and type(obj).__name__ == "Function"


def _sample(distribution: Any) -> Any:
    return distribution.sample() if _is_domain(distribution) else distribution()


def _explore(
    config: Dict,
    mutations: Dict,
    resample_probability: float,
    perturbation_factors: Tuple[float, ...],
    custom_explore_fn: Optional[Callable],
) -> Tuple[Dict, Dict]:
    """Return (perturbed copy of ``config``, {key: description of the operation})."""
    operations: Dict[str, Any] = {}
    new_config = copy.deepcopy(config)
    for key, distribution in mutations.items():
        if isinstance(distribution, dict):
            nested, nested_ops = _explore(
                config[key], distribution, resample_probability, perturbation_factors, None
            )
            new_config[key] = nested
            operations[key] = nested_ops
        elif isinstance(distribution, (list, tuple)):
            if random.random() < resample_probability or config[key] not in distribution:
                new_config[key] = random.choice(distribution)
                operations[key] = "resample"
            else:
                shift = random.choice([-1, 1])
                old_idx = distribution.index(config[key])
                new_idx = min(max(old_idx + shift, 0), len(distribution) - 1)
                new_config[key] = distribution[new_idx]
                operations[key] = (
                    f"shift {'left' if shift == -1 else 'right'}"
                    f"{' (noop)' if old_idx == new_idx else ''}"
                )
        elif _is_domain(distribution) or callable(distribution):
            if random.random() < resample_probability:
                new_config[key] = _sample(distribution)
                operations[key] = "resample"
            else:
                factor = random.choice(perturbation_factors)
                new_config[key] = config[key] * factor
                operations[key] = f"* {factor}"
            if isinstance(config[key], bool):
                new_config[key] = bool(new_config[key])
            elif isinstance(config[key], int):
                new_config[key] = int(round(new_config[key]))
        else:
            raise ValueError(
                f"Unsupported hyperparameter distribution type for `{key}`: {type(distribution)}"
            )
    if custom_explore_fn:
        new_config = custom_explore_fn(new_config)
        if new_config is None:
            raise ValueError("`custom_explore_fn` must return the new config, got None.")
    return new_config, operations


def _clean_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", str(value)).strip("_")


def _make_experiment_tag(orig_tag: str, config: Dict, mutations: Dict) -> str:
    """``<orig_tag>@perturbed[k=v,...]`` as Ray names perturbed trials."""
    pairs = sorted((k, config[k]) for k in mutations)
    return "{}@perturbed[{}]".format(
        orig_tag, ",".join(f"{_clean_value(k)}={_clean_value(v)}" for k, v in pairs)
    )


def _check_config(config: Dict, mutations: Dict, path: str = "") -> None:
    for key, spec in mutations.items():
        where = f"{path}{key}"
        if key not in config:
            raise ValueError(
                f"PopulationBasedTraining: `hyperparam_mutations` key `{where}` is not in the "
                f"trial's config (config keys: {sorted(map(str, config))}). Add `{where}` to "
                "the `param_space`/`config`, or remove it from `hyperparam_mutations`."
            )
        if isinstance(spec, dict):
            if not isinstance(config[key], dict):
                raise ValueError(
                    f"PopulationBasedTraining: `hyperparam_mutations[{where!r}]` is a dict of "
                    f"nested mutations but config `{where}` is {config[key]!r}, not a dict."
                )
            _check_config(config[key], spec, f"{where}/")


class _PBTTrialState:
    """PBT's bookkeeping for one trial."""

    def __init__(self, trial: Trial, order: int):
        self.orig_tag = trial.experiment_tag
        self.order = order
        self.last_score: Optional[float] = None
        # Ray keeps the checkpoint saved when the trial was last in the top quantile;
        # here a flag: the controller clones the donor's latest checkpoint.
        self.last_checkpoint = False
        self.last_perturbation_time = 0
        self.last_train_time = 0
        self.last_result: Optional[Dict] = None

    def __repr__(self) -> str:
        return (
            f"_PBTTrialState(last_score={self.last_score}, last_checkpoint={self.last_checkpoint},"
            f" last_train_time={self.last_train_time},"
            f" last_perturbation_time={self.last_perturbation_time})"
        )


class PopulationBasedTraining(FIFOScheduler):
    """Population Based Training (https://arxiv.org/abs/1711.09846), as Ray's.

    Every ``perturbation_interval`` units of ``time_attr`` a trial is ranked against
    the population by its latest ``metric``. If it is in the bottom
    ``quantile_fraction`` it *exploits* a random trial of the top quantile — it is
    paused, and restarted from that trial's checkpoint with a perturbed copy of its
    config (*explore*): each key of ``hyperparam_mutations`` is resampled with
    ``resample_probability``, otherwise a list value shifts to a neighbour and a
    continuous value is multiplied by one of ``perturbation_factors``.

    Args:
        time_attr: Monotonically increasing result key measuring progress.
        metric: Result key to optimise; with ``mode`` it may come from ``TuneConfig``.
        mode: 'min' or 'max'.
        perturbation_interval: Consider perturbing each trial this often (``time_attr`` units).
        burn_in_period: No perturbation before this much ``time_attr``.
        hyperparam_mutations: ``{key: list | tuple | callable | search domain | nested dict}``;
            every key must be in each trial's config.
        quantile_fraction: Fraction of the population at top and bottom, in [0, 0.5].
        resample_probability: Probability of resampling instead of perturbing.
        perturbation_factors: Factors for continuous values.
        custom_explore_fn: ``f(config) -> config`` applied after the built-in perturbation.
        log_config: Record each exploit in :attr:`policy_log` (the controller persists
            it as Ray's ``pbt_global.txt`` / ``pbt_policy_<trial_id>.txt``).
        require_attrs: Raise if a result lacks ``time_attr`` or ``metric``.
        synch: Synchronous PBT: all trials pause at each perturbation point and are
            ranked together.

    Example::

        pbt = PopulationBasedTraining(
            time_attr="training_iteration", metric="acc", mode="max",
            perturbation_interval=5,
            hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1), "bs": [16, 32, 64]},
        )
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Optional[Dict[str, Any]] = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Tuple[float, float] = (1.2, 0.8),
        custom_explore_fn: Optional[Callable] = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
    ):
        hyperparam_mutations = hyperparam_mutations or {}
        for key, value in hyperparam_mutations.items():
            if not (isinstance(value, (dict, list, tuple)) or callable(value) or _is_domain(value)):
                raise TypeError(
                    f"`hyperparam_mutations[{key!r}]` must be a list, tuple, dict, a tune "
                    f"search space object, or a callable; got {type(value).__name__}."
                )
            if _is_sample_from(value):
                raise ValueError(
                    f"`hyperparam_mutations[{key!r}]`: tune.sample_from objects are not "
                    "supported; use tune.uniform, tune.loguniform, tune.choice, a list "
                    "or a callable."
                )
        if not hyperparam_mutations and not custom_explore_fn:
            raise TuneError(
                "You must specify at least one of `hyperparam_mutations` or "
                "`custom_explore_fn` to use PBT."
            )
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(
                f"`quantile_fraction` must be between 0 and 0.5, got {quantile_fraction!r}."
            )
        if not perturbation_interval > 0:
            raise ValueError(f"`perturbation_interval` must be > 0, got {perturbation_interval!r}.")
        _util.check_mode(mode, type(self).__name__)
        super().__init__()
        self._metric = metric
        self._mode = mode
        self._metric_op = _util.metric_op(mode)
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = perturbation_factors
        self._trial_state: Dict[Trial, _PBTTrialState] = {}
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._next_perturbation_sync = max(perturbation_interval, burn_in_period)
        self._num_checkpoints = 0
        self._num_perturbations = 0
        self._order = itertools.count()
        # (score, add order) of every trial with a valid score, sorted: the ranking.
        self._ranking: List[Tuple[float, int]] = []
        self._by_order: Dict[int, Trial] = {}
        #: One entry per exploit when ``log_config``: ``(trial_id, donor_trial_id, policy)``,
        #: ``policy`` being Ray's ``[tag, donor tag, iteration, donor iteration,
        #: donor config, new config]`` line.
        self.policy_log: List[Tuple[str, str, list]] = []

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        return _util.set_metric_mode(self, metric, mode)

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        _util.require_metric_mode(self)
        _check_config(trial.config, self._hyperparam_mutations)
        order = next(self._order)
        self._trial_state[trial] = _PBTTrialState(trial, order)
        self._by_order[order] = trial

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        if self._require_attrs:
            name = type(self).__name__
            if not _util.has_keys(name, result, self._time_attr, self._metric, strict=True):
                return TrialScheduler.CONTINUE
        elif self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        time = result[self._time_attr]
        state = self._trial_state[trial]
        if time < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if time - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE  # avoid checkpoint overhead
        self._save_trial_state(state, time, result, trial)

        if not self._synch:
            state.last_perturbation_time = time
            lower, upper = self._quantiles()
            decision = TrialScheduler.CONTINUE
            for other in tune_controller.get_trials():
                if other.status in (PENDING, PAUSED):
                    decision = TrialScheduler.PAUSE  # time-share with waiting trials
                    break
            if self._checkpoint_or_exploit(trial, tune_controller, upper, lower, trial):
                return TrialScheduler.PAUSE
            return decision

        live = tune_controller.get_live_trials()
        if not any(
            t is not trial and self._trial_state[t].last_train_time < self._next_perturbation_sync
            for t in live
        ):
            lower, upper = self._quantiles()
            in_lower, in_upper = set(lower), set(upper)
            middle = [
                t for t in tune_controller.get_trials() if t not in in_lower and t not in in_upper
            ]
            # Top trials first so that their checkpoints are marked before bottom ones clone.
            for t in upper + middle + lower:
                if t not in self._trial_state:
                    continue
                self._trial_state[t].last_perturbation_time = time
                self._checkpoint_or_exploit(t, tune_controller, upper, lower, trial)
            max_last_train_time = max(
                self._trial_state[t].last_train_time
                for t in tune_controller.get_trials()
                if t in self._trial_state
            )
            self._next_perturbation_sync = max(
                self._next_perturbation_sync + self._perturbation_interval, max_last_train_time
            )
        # Synchronous mode pauses every trial at the perturbation point.
        return TrialScheduler.PAUSE

    def _save_trial_state(
        self, state: _PBTTrialState, time: float, result: Dict, trial: Trial
    ) -> float:
        score = self._metric_op * result[self._metric]
        if state.last_score is not None and not math.isnan(state.last_score):
            key = (state.last_score, state.order)
            i = bisect.bisect_left(self._ranking, key)
            if i < len(self._ranking) and self._ranking[i] == key:
                del self._ranking[i]
        state.last_score = score
        state.last_train_time = time
        state.last_result = result
        if not math.isnan(score):
            bisect.insort(self._ranking, (score, state.order))
        return score

    def _checkpoint_or_exploit(
        self,
        trial: Trial,
        tune_controller: SchedulerController,
        upper_quantile: List[Trial],
        lower_quantile: List[Trial],
        reporting: Trial,
    ) -> bool:
        """Mark top trials as donors; make bottom ones exploit. True if ``reporting`` exploits."""
        state = self._trial_state[trial]
        if trial in upper_quantile:
            state.last_checkpoint = True
            self._num_checkpoints += 1
        else:
            state.last_checkpoint = False
        if trial not in lower_quantile:
            return False
        donor = random.choice(upper_quantile)
        assert donor is not trial
        if not self._trial_state[donor].last_checkpoint:
            logger.info(
                "[pbt]: no checkpoint for trial %s. Skip exploit for Trial %s", donor, trial
            )
            return False
        return self._exploit(tune_controller, trial, donor, reporting)

    def _exploit(
        self, tune_controller: SchedulerController, trial: Trial, donor: Trial, reporting: Trial
    ) -> bool:
        trial_state = self._trial_state[trial]
        donor_state = self._trial_state[donor]
        new_config, operations = _explore(
            donor.config,
            self._hyperparam_mutations,
            self._resample_probability,
            self._perturbation_factors,
            self._custom_explore_fn,
        )
        new_tag = _make_experiment_tag(trial_state.orig_tag, new_config, self._hyperparam_mutations)
        if trial is not reporting and trial.status == RUNNING:
            tune_controller.pause_trial(trial, should_checkpoint=False)
        if not tune_controller.exploit(trial, donor, new_config, new_tag):
            logger.info("[pbt]: trial %s has no checkpoint. Skip exploit for %s", donor, trial)
            return False
        logger.info(
            "[PopulationBasedTraining] [Exploit] Cloning trial %s (score = %s) into trial %s "
            "(score = %s); perturbations: %s",
            donor.trial_id,
            donor_state.last_score,
            trial.trial_id,
            trial_state.last_score,
            operations,
        )
        if self._log_config:
            policy = [
                trial_state.orig_tag,
                donor_state.orig_tag,
                trial.last_result.get("training_iteration", 0),
                donor.last_result.get("training_iteration", 0),
                donor.config,
                new_config,
            ]
            self.policy_log.append((trial.trial_id, donor.trial_id, policy))
        self._num_perturbations += 1
        trial_state.last_perturbation_time = donor_state.last_perturbation_time
        trial_state.last_train_time = donor_state.last_train_time
        return trial is reporting

    def _quantiles(self) -> Tuple[List[Trial], List[Trial]]:
        """(bottom, top) trials by latest score; empty lists with fewer than two ranked."""
        trials = [self._by_order[o] for _, o in self._ranking]
        trials = [t for t in trials if not t.is_finished()]
        if len(trials) <= 1:
            return [], []
        num = int(math.ceil(len(trials) * self._quantile_fraction))
        if num > len(trials) / 2:
            num = int(math.floor(len(trials) / 2))
        return trials[:num], trials[len(trials) - num :]

    def choose_trial_to_run(self, tune_controller: SchedulerController) -> Optional[Trial]:
        """The waiting trial with the least ``time_attr`` trained (fair time-sharing)."""
        best, best_time = None, None
        for trial in tune_controller.get_trials():
            if trial.status not in (PENDING, PAUSED):
                continue
            state = self._trial_state.get(trial)
            t = state.last_train_time if state else 0
            if self._synch and t >= self._next_perturbation_sync:
                continue
            if best_time is None or t < best_time:
                best, best_time = trial, t
        return best

    def reset_stats(self) -> None:
        """Reset the checkpoint and perturbation counters."""
        self._num_perturbations = 0
        self._num_checkpoints = 0

    def last_scores(self, trials: List[Trial]) -> List[float]:
        """Latest mode-adjusted scores (bigger is better) of the unfinished ``trials``."""
        return [
            self._trial_state[t].last_score
            for t in trials
            if self._trial_state[t].last_score is not None and not t.is_finished()
        ]

    def debug_string(self) -> str:
        return "PopulationBasedTraining: {} checkpoints, {} perturbs".format(
            self._num_checkpoints, self._num_perturbations
        )


# Ray's path for it: ray.tune.schedulers.pbt.PopulationBasedTrainingReplay
from tunelib.schedulers.pbt_replay import PopulationBasedTrainingReplay  # noqa: E402, F401
