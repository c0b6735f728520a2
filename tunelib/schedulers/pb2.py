"""PB2, Population Based Bandits (Ray's ``PB2``): PBT whose explore step is a GP bandit.

Bottom trials clone top trials as in PBT, but the new hyperparameters are chosen by a
Gaussian process (time-varying kernel, UCB) fitted to how much each config improved the
reward per unit of ``time_attr``. Needs scikit-learn (``pip install 'tunelib[pb2]'``).

Example::

    from tunelib.schedulers import PB2
    pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max",
              perturbation_interval=4, hyperparam_bounds={"lr": [1e-4, 1e-1]})
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from tunelib._layout import flatten_dict, unflatten_dict
from tunelib.error import TuneError
from tunelib.schedulers import _util
from tunelib.schedulers.pbt import PopulationBasedTraining, _PBTTrialState
from tunelib.schedulers.trial_scheduler import SchedulerController
from tunelib.trial import Trial

logger = logging.getLogger(__name__)


def import_pb2_dependencies():
    """``sklearn`` (and pandas), or None when scikit-learn is not installed."""
    try:
        import sklearn
    except ImportError:
        return None
    return sklearn


def _pandas():
    import pandas as pd

    return pd


def _fill_config(config: Dict, hyperparam_bounds: Dict[str, Union[dict, list, tuple]]) -> Dict:
    """Sample (uniformly, ``np.random``) the bounded hyperparameters ``config`` lacks, in place.

    Returns what was filled in, nested like ``hyperparam_bounds``.
    """
    filled = {}
    for name, bounds in hyperparam_bounds.items():
        if isinstance(bounds, dict):
            config.setdefault(name, {})
            filled[name] = _fill_config(config[name], bounds)
        elif isinstance(bounds, (list, tuple)) and name not in config:
            low, high = bounds
            config[name] = filled[name] = np.random.uniform(low, high)
    return filled


def _select_config(
    Xraw: np.ndarray,
    yraw: np.ndarray,
    current: Optional[np.ndarray],
    newpoint: np.ndarray,
    bounds: dict,
    num_f: int,
) -> np.ndarray:
    """Fit the GP to (time, reward before, hyperparams) -> reward change; maximise UCB.

    ``current`` holds the hyperparams of trials already restarted in this round; a second
    GP including them (with dummy labels: the variance ignores labels) keeps the batch
    diverse. ``newpoint`` is the (time, reward) of the donor, fixed during the search.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor

    from tunelib.schedulers.pb2_utils import (
        UCB,
        TV_SquaredExp,
        normalize,
        optimize_acq,
        select_length,
        standardize,
    )

    length = select_length(Xraw, yraw, bounds, num_f)
    Xraw = Xraw[-length:, :]
    yraw = yraw[-length:]
    base_vals = np.array(list(bounds.values())).T
    oldpoints = Xraw[:, :num_f]
    old_lims = np.concatenate((np.max(oldpoints, axis=0), np.min(oldpoints, axis=0))).reshape(
        2, oldpoints.shape[1]
    )
    limits = np.concatenate((old_lims, base_vals), axis=1)
    X = normalize(Xraw, limits)
    y = standardize(yraw).reshape(yraw.size, 1)
    fixed = normalize(newpoint, oldpoints)

    def fit(X, y):
        kernel = TV_SquaredExp(variance=1.0, lengthscale=1.0, epsilon=0.1)
        model = GaussianProcessRegressor(kernel=kernel, optimizer="fmin_l_bfgs_b", alpha=1e-10)
        model.fit(X, y)
        return model

    try:
        m = fit(X, y)
    except np.linalg.LinAlgError:
        X += np.eye(X.shape[0]) * 1e-3  # Ray's fallback: nudge the diagonal
        m = fit(X, y)
    if current is None:
        m1 = m
    else:
        padding = np.array([fixed for _ in range(current.shape[0])])
        current = np.hstack((padding, normalize(current, base_vals)))
        m1 = fit(np.vstack((X, current)), np.vstack((y, np.zeros((current.shape[0], 1)))))
    xt = optimize_acq(UCB, m, m1, fixed, num_f)
    xt = xt * (np.max(base_vals, axis=0) - np.min(base_vals, axis=0)) + np.min(base_vals, axis=0)
    return xt.astype(np.float32)


def _explore(
    data: Any,
    bounds: Dict[str, Tuple[float, float]],
    current: Optional[np.ndarray],
    base: Trial,
    old: Trial,
    config: Dict[str, Any],
) -> Tuple[Dict, Any]:
    """(new flat config for ``old``, cloning ``base``; the data with the new entry added).

    The data (one row per result: Trial, Time, hyperparams, Reward) becomes reward changes
    per unit of time; the GP picks the next hyperparams; the new config is recorded with
    the donor's time and reward, so the next change is measured against the new weights.
    """
    pd = _pandas()
    df = data.sort_values(by="Time").reset_index(drop=True)
    keys = ["Trial"] + list(bounds.keys())
    df["y"] = df.groupby(keys)["Reward"].diff()
    df["t_change"] = df.groupby(keys)["Time"].diff()
    df = df[df["t_change"] > 0].reset_index(drop=True)
    df["R_before"] = df.Reward - df.y
    df["y"] = df.y / df.t_change
    df = df[~df.y.isna()].reset_index(drop=True)
    df = df.sort_values(by="Time").reset_index(drop=True)
    df = df.iloc[-1000:, :].reset_index(drop=True)  # keep the GP fast
    dfnewpoint = df[df["Trial"] == str(base)]
    if dfnewpoint.empty:
        return config.copy(), data
    y = np.array(df.y.values)
    t_r = df[["Time", "R_before"]]
    hparams = df[list(bounds.keys())]
    X = pd.concat([t_r, hparams], axis=1).values
    newpoint = dfnewpoint.iloc[-1, :][["Time", "R_before"]].values
    new = _select_config(X, y, current, newpoint, bounds, num_f=len(t_r.columns))
    new_config = config.copy()
    values = []
    for i, col in enumerate(hparams.columns):
        # the type of the old value (int stays int)
        value = type(config[col])(new[i])
        new_config[col] = value
        values.append(value)
    new_t = dfnewpoint.iloc[-1, :]["Time"]
    new_reward = dfnewpoint.iloc[-1, :].Reward
    new_entry = pd.DataFrame(
        [[str(old), new_t] + values + [new_reward]],
        columns=["Trial", "Time"] + list(bounds) + ["Reward"],
    )
    return new_config, pd.concat([data, new_entry]).reset_index(drop=True)


class _Choice:
    """Holds the config PB2 chose for the exploit in progress (picklable, no self-reference)."""

    def __init__(self) -> None:
        self.config: Optional[Dict] = None


def _chosen_config(choice: _Choice, custom_explore_fn: Optional[Callable], _perturbed: Dict):
    # PBT's own perturbation (``_perturbed``) is discarded: PB2's GP chose the config.
    config = choice.config
    if custom_explore_fn:
        config = custom_explore_fn(config)
        if config is None:
            raise ValueError("Custom explore function failed to return a new config")
    return config


class PB2(PopulationBasedTraining):
    """Population Based Bandits (https://arxiv.org/abs/2002.02518), as Ray's ``PB2``.

    As :class:`PopulationBasedTraining`, but each exploit's hyperparameters are chosen by
    GP-bandit optimisation within ``hyperparam_bounds``. Hyperparameters missing from a
    trial's config are sampled uniformly within their bounds.

    Args:
        time_attr: Monotonically increasing result key measuring progress.
        metric: Result key to optimise; with ``mode`` it may come from ``TuneConfig``.
        mode: 'min' or 'max'.
        perturbation_interval: Consider perturbing each trial this often.
        hyperparam_bounds: ``{key: [low, high]}`` (a dict value nests).
        quantile_fraction: Fraction of the population at top and bottom, in [0, 0.5].
        log_config: Record each exploit (Ray's ``pbt_policy_*.txt`` files).
        require_attrs: Raise if a result lacks ``time_attr`` or ``metric``.
        synch: Synchronous mode.
        custom_explore_fn: ``f(config) -> config`` applied after the GP's choice.

    Example::

        pb2 = PB2(time_attr="training_iteration", metric="mean_accuracy", mode="max",
                  perturbation_interval=20,
                  hyperparam_bounds={"lr": [0.0001, 0.02], "alpha": [0.0, 1.0]})
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: Optional[Dict[str, Union[dict, list, tuple]]] = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Optional[Callable[[dict], dict]] = None,
    ):
        if not import_pb2_dependencies():
            raise RuntimeError("Please install scikit-learn to use PB2.")
        hyperparam_bounds = hyperparam_bounds or {}
        if not hyperparam_bounds:
            raise TuneError("`hyperparam_bounds` must be specified to use PB2 scheduler.")
        bounds_flat = flatten_dict(hyperparam_bounds, prevent_delimiter=True)
        _validate_hyperparam_bounds(bounds_flat)
        self._choice = _Choice()
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations=hyperparam_bounds,
            quantile_fraction=quantile_fraction,
            resample_probability=0,
            custom_explore_fn=functools.partial(_chosen_config, self._choice, custom_explore_fn),
            log_config=log_config,
            require_attrs=require_attrs,
            synch=synch,
        )
        self._pb2_custom_explore_fn = custom_explore_fn
        self.last_exploration_time = 0
        self.data = _pandas().DataFrame()
        self._hyperparam_bounds = hyperparam_bounds
        self._hyperparam_bounds_flat = bounds_flat
        # hyperparams of trials restarted in the current round (not yet measured)
        self.current: Optional[np.ndarray] = None

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        filled = _fill_config(trial.config, self._hyperparam_bounds)
        trial.evaluated_params.update(flatten_dict(filled))
        super().on_trial_add(tune_controller, trial)

    def _save_trial_state(
        self, state: _PBTTrialState, time: float, result: Dict, trial: Trial
    ) -> float:
        score = super()._save_trial_state(state, time, result, trial)
        pd = _pandas()
        names = list(self._hyperparam_bounds_flat)
        flat_config = flatten_dict(trial.config)
        entry = pd.DataFrame(
            [[str(trial), result[self._time_attr]] + [flat_config[k] for k in names] + [score]],
            columns=["Trial", "Time"] + names + ["Reward"],
        )
        data = pd.concat([self.data, entry]) if len(self.data) else entry
        self.data = data.reset_index(drop=True)
        self.data["Trial"] = self.data["Trial"].astype("str")
        return score

    def _exploit(
        self, tune_controller: SchedulerController, trial: Trial, donor: Trial, reporting: Trial
    ) -> bool:
        # PBT perturbs the donor's config and hands the result to `custom_explore_fn`;
        # PB2's (see __init__) replaces it with the config chosen here.
        self._choice.config, _ = self._get_new_config(trial, donor)
        try:
            return super()._exploit(tune_controller, trial, donor, reporting)
        finally:
            self._choice.config = None

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> Tuple[Dict, Dict]:
        """The config ``trial`` continues with, cloning ``trial_to_clone``, chosen by the GP.

        Example::

            new_config, _ = pb2._get_new_config(bottom_trial, top_trial)
        """
        if self.data["Time"].max() > self.last_exploration_time:
            self.current = None  # a new round: trials still running are not penalised
        new_config_flat, data = _explore(
            self.data,
            self._hyperparam_bounds_flat,
            self.current,
            trial_to_clone,
            trial,
            flatten_dict(trial_to_clone.config),
        )
        self.data = data.copy()
        new = np.array([new_config_flat[k] for k in self._hyperparam_bounds_flat])
        new = new.reshape(1, new.size)
        if self.data["Time"].max() > self.last_exploration_time:
            self.last_exploration_time = self.data["Time"].max()
            self.current = new.copy()
        else:
            self.current = np.concatenate((self.current, new), axis=0)
        return unflatten_dict(new_config_flat), {}

    def save(self, checkpoint_path: str) -> None:
        _util.pickle_state(self, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        _util.unpickle_state(self, checkpoint_path)


def _validate_hyperparam_bounds(hyperparam_bounds: Dict[str, Any]) -> None:
    """Raise ValueError unless every (flattened) bound is ``[low, high]`` with low <= high."""
    for key, value in hyperparam_bounds.items():
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(
                "`hyperparam_bounds` values must either be a list or tuple of size 2, but got "
                f"{value} instead for the param '{key}'"
            )
        low, high = value
        if low > high:
            raise ValueError(
                "`hyperparam_bounds` values must be of the form [low, high] where low <= high, "
                f"but got {value} instead for param '{key}'."
            )

