"""``Searcher``: the base class of suggestion algorithms (Optuna, HyperOpt, custom ones).

A ``Searcher`` answers ``suggest(trial_id)`` with a config dict; ``SearchGenerator`` turns it
into the controller-facing ``SearchAlgorithm``. Same interface as Ray's.

Example::

    class RandomSearch(Searcher):
        def suggest(self, trial_id):
            return {"x": random.random()}
        def on_trial_complete(self, trial_id, result=None, error=False):
            pass
"""

from __future__ import annotations

import glob
import logging
import os
import uuid
import warnings
from typing import Any, Dict, List, Optional, Union

logger = logging.getLogger(__name__)

_MODES = ("min", "max")


class Searcher:
    """Abstract class for suggestion algorithms; subclass and implement ``suggest``.

    Args:
        metric: The result key to optimise (a list of keys for multi-objective searchers).
        mode: ``"min"`` or ``"max"`` (a list matching ``metric`` for multi-objective).

    Example::

        class ExampleSearch(Searcher):
            def __init__(self, metric="mean_loss", mode="min"):
                super().__init__(metric=metric, mode=mode)
                self.configs = {}
            def suggest(self, trial_id):
                self.configs[trial_id] = {"x": random.uniform(0, 1)}
                return self.configs[trial_id]
            def on_trial_complete(self, trial_id, result=None, error=False):
                ...

        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=ExampleSearch()))
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None):
        self._metric = metric
        self._mode = mode
        _check_metric_mode(metric, mode)

    def _require_space_and_metric(self, space, details: str = "") -> None:
        """Ray's errors for a searcher asked to work before its search space, metric and
        mode are set."""
        from tunelib.search import UNDEFINED_METRIC_MODE, UNDEFINED_SEARCH_SPACE

        if not space:
            raise RuntimeError(
                UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space") + details
            )
        if not self._metric or not self._mode:
            raise RuntimeError(
                UNDEFINED_METRIC_MODE.format(
                    cls=type(self).__name__, metric=self._metric, mode=self._mode
                )
            )

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        """Take metric, mode and the param space from the Tuner; False if already set.

        Example::

            searcher.set_search_properties("loss", "min", {"x": tune.uniform(0, 1)})
        """
        return False

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Optional notification of an intermediate result (may lack the metric, may hold NaN).

        Example::

            searcher.on_trial_result("t1", {"loss": 0.5, "training_iteration": 1})
        """

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        """A trial ended; ``result`` is its last result (None upon some errors).

        Example::

            searcher.on_trial_complete("t1", {"loss": 0.4})
        """
        raise NotImplementedError

    def suggest(self, trial_id: str) -> Optional[Dict]:
        """Return a config dict, ``Searcher.FINISHED`` (no more ever) or None (none now).

        Example::

            config = searcher.suggest("t1")
        """
        raise NotImplementedError

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ):
        """Tell the searcher about a point evaluated elsewhere (if it supports that).

        Example::

            searcher.add_evaluated_point({"x": 0.3}, value=1.2)
        """
        raise NotImplementedError

    def add_evaluated_trials(self, trials_or_analysis: Union[Any, List[Any]], metric: str):
        """Feed past trials (a Trial, a list, or an ExperimentAnalysis) to the searcher.

        Example::

            searcher.add_evaluated_trials(previous_analysis, metric="loss")
        """
        if type(self).add_evaluated_point is Searcher.add_evaluated_point:
            raise NotImplementedError
        if isinstance(trials_or_analysis, (list, tuple)):
            trials = trials_or_analysis
        elif hasattr(trials_or_analysis, "trials"):
            trials = trials_or_analysis.trials
        elif hasattr(trials_or_analysis, "last_result"):
            trials = [trials_or_analysis]
        else:
            raise NotImplementedError(
                "Expected input to be a `Trial`, a list of `Trial`s, or "
                f"`ExperimentAnalysis`, got: {trials_or_analysis}"
            )
        any_trial_had_metric = False
        for trial in trials:
            last = getattr(trial, "last_result", None) or {}
            status = str(getattr(trial, "status", ""))
            finished = status == "TERMINATED" and last.get("done", False)
            if metric in last and finished:
                any_trial_had_metric = True
            if metric not in last:
                continue
            self.add_evaluated_point(
                parameters=trial.config,
                value=last.get(metric),
                error=status == "ERROR",
                pruned=status == "TERMINATED" and not last.get("done", False),
                intermediate_values=None,
            )
        if not any_trial_had_metric:
            warnings.warn(
                "No completed trial returned the specified metric. "
                "Make sure the name you have passed is correct.",
                stacklevel=2,
            )

    def save(self, checkpoint_path: str):
        """Save the searcher's state to the file ``checkpoint_path``.

        Example::

            searcher.save("./my_searcher.pkl")
        """
        raise NotImplementedError

    def restore(self, checkpoint_path: str):
        """Restore the state written by :meth:`save`.

        Example::

            searcher.restore("./my_searcher.pkl")
        """
        raise NotImplementedError

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Called by ``ConcurrencyLimiter``; return True if the searcher limits concurrency itself.

        Example::

            searcher.set_max_concurrency(4)   # False: let the ConcurrencyLimiter do it
        """
        return False

    def get_state(self) -> Dict:
        """The searcher's state as a dict (wrappers use this)."""
        raise NotImplementedError

    def set_state(self, state: Dict):
        """Set the state returned by :meth:`get_state`."""
        raise NotImplementedError

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default"):
        """Save into ``checkpoint_dir/searcher-state-<session_str>.pkl`` atomically.

        Example::

            searcher.save_to_dir("~/tunelib_results/my_exp")
        """
        file_name = self.CKPT_FILE_TMPL.format(session_str)
        os.makedirs(checkpoint_dir, exist_ok=True)
        tmp_path = os.path.join(checkpoint_dir, f".{uuid.uuid4()}-tmp-{file_name}")
        try:
            self.save(tmp_path)
        except NotImplementedError:
            logger.warning("save not implemented for %s. Skipping save.", type(self).__name__)
            return
        if os.path.exists(tmp_path):
            os.replace(tmp_path, os.path.join(checkpoint_dir, file_name))

    def restore_from_dir(self, checkpoint_dir: str):
        """Restore from the newest ``searcher-state-*.pkl`` in ``checkpoint_dir``.

        Example::

            searcher.restore_from_dir("~/tunelib_results/my_exp")
        """
        pattern = self.CKPT_FILE_TMPL.format("*")
        paths = glob.glob(os.path.join(glob.escape(checkpoint_dir), pattern))
        if not paths:
            raise RuntimeError(f"Searcher unable to find checkpoint in {checkpoint_dir}")
        self.restore(max(paths))

    @property
    def metric(self) -> str:
        """The training result objective value attribute."""
        return self._metric

    @property
    def mode(self) -> str:
        """Specifies if minimizing or maximizing the metric."""
        return self._mode


def _check_metric_mode(metric, mode) -> None:
    if mode is None or metric is None:
        if isinstance(mode, str) and mode not in _MODES:
            raise ValueError(f"`mode` must be one of {list(_MODES)}, got {mode!r}")
        return
    if isinstance(mode, str):
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {list(_MODES)}, got {mode!r}")
        if not isinstance(metric, str):
            raise ValueError(f"`metric` and `mode` must both be str or both lists, got {metric!r}")
    elif isinstance(mode, list):
        if not isinstance(metric, list) or len(metric) != len(mode):
            raise ValueError("`metric` and `mode` lists must have the same length")
        if not all(m in ("min", "max", "obs") for m in mode):
            raise ValueError(f"every `mode` must be 'min', 'max' or 'obs', got {mode!r}")
    else:
        raise ValueError(f"`mode` must be a str or a list, got {mode!r}")


def set_search_properties_backwards_compatible(
    func, metric: Optional[str], mode: Optional[str], config: Dict, **spec
) -> bool:
    """Call ``func(metric, mode, config, **spec)``; fall back for searchers without ``**spec``.

    Example::

        set_search_properties_backwards_compatible(searcher.set_search_properties, "m", "min", {})
    """
    try:
        return func(metric, mode, config, **spec)
    except TypeError as exc:
        if "got an unexpected keyword argument" in str(exc):
            logger.warning(
                "Please update custom Searcher to take in function signature as "
                "``def set_search_properties(metric, mode, config, **spec) -> bool``."
            )
            return func(metric, mode, config)
        raise
