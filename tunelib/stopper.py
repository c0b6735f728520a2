"""Stoppers, as ``ray.tune.stopper``: decide from results when a trial or the experiment ends.

The controller calls ``stopper(trial_id, result)`` on every result (True stops that
trial) and ``stopper.stop_all()`` after each result (True ends the experiment).
:func:`as_stopper` turns any form of Ray's ``stop=`` argument into a Stopper.
"""

from __future__ import annotations

import abc
import datetime
import logging
import time
from collections import defaultdict, deque
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np

from tunelib.schedulers._util import AUTO_KEYS

logger = logging.getLogger(__name__)

__all__ = [
    "Stopper",
    "CombinedStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
    "as_stopper",
]


class Stopper(abc.ABC):
    """Base class for stopping trials (``__call__``) or the whole experiment (``stop_all``).

    Example::

        class TimeStopper(Stopper):
            def __init__(self):
                self._start = time.time()

            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return time.time() - self._start > 2

        tune.Tuner(train_fn, run_config=tune.RunConfig(stop=TimeStopper()))
    """

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        """Return True if the trial should be terminated given the result."""
        raise NotImplementedError

    def stop_all(self) -> bool:
        """Return True if the whole experiment should be terminated."""
        raise NotImplementedError


class CombinedStopper(Stopper):
    """Stop when any of the given stoppers says so (logical OR).

    Example::

        CombinedStopper(MaximumIterationStopper(10), TrialPlateauStopper(metric="loss"))
    """

    def __init__(self, *stoppers: Stopper):
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return any(s(trial_id, result) for s in self._stoppers)

    def stop_all(self) -> bool:
        return any(s.stop_all() for s in self._stoppers)


class NoopStopper(Stopper):
    """Never stops anything."""

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False


class FunctionStopper(Stopper):
    """Stop a trial when ``function(trial_id, result)`` returns True.

    Example::

        FunctionStopper(lambda trial_id, result: result["loss"] < 0.01)
    """

    def __init__(self, function: Callable[[str, Dict], bool]):
        self._fn = function

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return self._fn(trial_id, result)

    def stop_all(self) -> bool:
        return False

    @classmethod
    def is_valid_function(cls, fn: Any) -> bool:
        """True for a plain callable (not a Stopper); ValueError for a Stopper look-alike."""
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise ValueError(
                "Stop object must be tunelib.tune.Stopper subclass to be detected correctly."
            )
        return is_function


class MaximumIterationStopper(Stopper):
    """Stop each trial after it has reported ``max_iter`` results.

    Example::

        tune.RunConfig(stop=MaximumIterationStopper(max_iter=10))
    """

    def __init__(self, max_iter: int):
        self._max_iter = max_iter
        self._iter: Dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter

    def stop_all(self) -> bool:
        return False


class TrialPlateauStopper(Stopper):
    """Stop a trial once the std of its last ``num_results`` values of ``metric`` < ``std``.

    Args:
        metric: Metric to watch.
        std: Standard deviation below which the trial has plateaued.
        num_results: How many of the latest results the std is taken over.
        grace_period: Never stop before this many results.
        metric_threshold: Only stop once the metric is better than this
            (below it for ``mode='min'``, above it for ``mode='max'``).
        mode: 'min' or 'max'; required with ``metric_threshold``.

    Example::

        TrialPlateauStopper(metric="loss", std=0.001, num_results=5)
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: Optional[float] = None,
        mode: Optional[str] = None,
    ):
        self._metric = metric
        self._mode = mode
        self._std = std
        self._num_results = num_results
        self._grace_period = grace_period
        self._metric_threshold = metric_threshold
        if self._metric_threshold and mode not in ("min", "max"):
            raise ValueError(
                "When specifying a `metric_threshold`, the `mode` argument has to be one "
                f"of [min, max]. Got: {mode!r}"
            )
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"TrialPlateauStopper: `mode` must be 'min' or 'max', got {mode!r}.")
        self._iter: Dict[str, int] = defaultdict(int)
        self._trial_results: Dict[str, deque] = defaultdict(lambda: deque(maxlen=self._num_results))
        self._seen_metric = False

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        _check_reported(self, self._metric, result, self._seen_metric)
        self._seen_metric = self._seen_metric or self._metric in result
        metric_result = result.get(self._metric)
        self._trial_results[trial_id].append(metric_result)
        self._iter[trial_id] += 1
        if self._iter[trial_id] < self._grace_period:
            return False
        if len(self._trial_results[trial_id]) < self._num_results:
            return False
        if self._metric_threshold is not None:
            if self._mode == "min" and metric_result > self._metric_threshold:
                return False
            if self._mode == "max" and metric_result < self._metric_threshold:
                return False
        try:
            current_std = np.std(self._trial_results[trial_id])
        except Exception:
            current_std = float("inf")
        return bool(current_std < self._std)

    def stop_all(self) -> bool:
        return False

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_trial_results"] = dict(state["_trial_results"])  # the lambda does not pickle
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        results = state.pop("_trial_results")
        self.__dict__.update(state)
        self._trial_results = defaultdict(lambda: deque(maxlen=self._num_results), results)


class ExperimentPlateauStopper(Stopper):
    """Stop the experiment when the ``top`` best values of ``metric`` have plateaued.

    Once ``top`` results are in and their std is <= ``std`` for more than
    ``patience`` consecutive results, every trial is stopped.

    Example::

        ExperimentPlateauStopper(metric="loss", std=0.001, top=10, mode="min", patience=2)
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.001,
        top: int = 10,
        mode: str = "min",
        patience: int = 0,
    ):
        if mode not in ("min", "max"):
            raise ValueError(
                f"ExperimentPlateauStopper: `mode` must be 'min' or 'max', got {mode!r}."
            )
        if not isinstance(top, int) or top <= 1:
            raise ValueError(
                f"ExperimentPlateauStopper: `top` must be an integer greater than one, got {top!r}."
            )
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(
                f"ExperimentPlateauStopper: `patience` must be an integer >= 0, got {patience!r}."
            )
        if not isinstance(std, float) or std <= 0:
            raise ValueError(f"ExperimentPlateauStopper: `std` must be a float > 0, got {std!r}.")
        self._mode = mode
        self._metric = metric
        self._patience = patience
        self._iterations = 0
        self._std = std
        self._top = top
        self._top_values: list = []
        self._seen_metric = False

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        """Return True when the experiment has to stop."""
        _check_reported(self, self._metric, result, self._seen_metric)
        if self._metric not in result:
            return self.stop_all()
        self._seen_metric = True
        self._top_values.append(result[self._metric])
        if self._mode == "min":
            self._top_values = sorted(self._top_values)[: self._top]
        else:
            self._top_values = sorted(self._top_values)[-self._top :]
        if self.has_plateaued():
            self._iterations += 1
        else:
            self._iterations = 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """Whether the ``top`` best values are within ``std`` of each other."""
        return len(self._top_values) == self._top and np.std(self._top_values) <= self._std

    def stop_all(self) -> bool:
        return bool(self.has_plateaued() and self._iterations >= self._patience)


class TimeoutStopper(Stopper):
    """Stop the experiment after ``timeout`` seconds (or a ``timedelta``) of running.

    The clock starts at the first ``stop_all()`` call, as in Ray (setup does not count).
    ``tune.RunConfig``'s ``time_budget_s`` creates one.

    Example::

        TimeoutStopper(datetime.timedelta(minutes=30))
    """

    def __init__(self, timeout: Union[int, float, datetime.timedelta]):
        if isinstance(timeout, datetime.timedelta):
            self._timeout_seconds = timeout.total_seconds()
        elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            self._timeout_seconds = timeout
        else:
            raise ValueError(
                "`timeout` parameter has to be either a number or a "
                f"`datetime.timedelta` object. Found: {type(timeout)}"
            )
        self._budget = self._timeout_seconds
        self._last_check: Optional[float] = None

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        now = time.time()
        if self._last_check:
            self._budget -= now - self._last_check
        self._last_check = now
        if self._budget <= 0:
            logger.info(
                "Reached timeout of %s seconds. Stopping all trials.", self._timeout_seconds
            )
            return True
        return False

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state["_last_check"] = None
        self.__dict__.update(state)


class _DictStopper(Stopper):
    """Ray's ``stop={"key": value}``: stop a trial once any ``result[key] >= value``."""

    def __init__(self, criteria: Mapping[str, Any]):
        for key in criteria:
            if isinstance(criteria[key], dict):
                raise ValueError(
                    "Stopping criteria is now flattened by default. "
                    "Use forward slashes to nest values `key1/key2/key3`."
                )
        self._criteria = dict(criteria)
        self._seen: set = set()

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        if result.get("done"):
            return True
        stop = False
        for key, value in self._criteria.items():
            if key in result:
                self._seen.add(key)
                stop = stop or result[key] >= value
            else:
                _check_reported(self, key, result, key in self._seen, param="stop")
        return stop

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"DictStopper({self._criteria!r})"


def _check_reported(owner: Any, key: str, result: Dict, seen: bool, param: str = "metric") -> None:
    """ValueError when ``key`` is missing and no earlier result ever had it.

    Results with only auto-filled keys (e.g. the last, empty result) are not judged.
    """
    if seen or key in result:
        return
    if all(k in AUTO_KEYS for k in result):
        return
    name = "stop" if isinstance(owner, _DictStopper) else type(owner).__name__
    raise ValueError(
        f"`{name}` criterion `{key}` (the `{param}`) is not in the trial's result. "
        f"Reported keys: {sorted(map(str, result))}. Report `{key}` with tune.report(), "
        "or use one of the reported keys."
    )


def as_stopper(stop: Any) -> Optional[Stopper]:
    """Turn Ray's ``stop=`` argument into a :class:`Stopper` (or None).

    Accepts None, a dict ``{result_key: threshold}`` (stop a trial once
    ``result[key] >= threshold`` for any key), a function ``(trial_id, result) -> bool``,
    a Stopper, or a list of Stoppers (combined with OR).

    Example::

        as_stopper({"training_iteration": 10, "mean_accuracy": 0.98})
        as_stopper(lambda trial_id, result: result["loss"] < 0.1)
    """
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, Mapping):
        return _DictStopper(stop) if stop else None
    if isinstance(stop, (list, tuple)):
        bad = [type(s).__name__ for s in stop if not isinstance(s, Stopper)]
        if bad:
            raise TypeError(
                f"If `stop` is a list, each element must be a tunelib.tune.Stopper; got {bad}."
            )
        return CombinedStopper(*stop)
    if callable(stop) and FunctionStopper.is_valid_function(stop):
        return FunctionStopper(stop)
    raise TypeError(
        "`stop` must be None, a dict of {result_key: threshold}, a function "
        f"(trial_id, result) -> bool, or a tunelib.tune.Stopper; got {type(stop).__name__}: "
        f"{stop!r}."
    )
