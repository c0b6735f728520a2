"""The configuration dataclasses of Ray Tune: TuneConfig, RunConfig, CheckpointConfig, FailureConfig.

Field names, order and defaults follow Ray 2.60 exactly (see shared/reference); validation
happens here, at construction, so a bad value fails before any trial starts. The few Ray
fields tunelib does not honour are accepted (Ray code runs unchanged) but warn when set.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Union

from tunelib._validation import check_class_keywords

_DEPRECATED = "DEPRECATED"
_DEPRECATED_IN_RAY = "deprecated in Ray, and tunelib has no such behaviour"


def _caller_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel, seen from our caller, of the first frame outside
    tunelib: the user's line, whether the config was built there, in ``tune.run(...)`` or by
    ``Tuner.fit()`` of a restored experiment (through ``dataclasses.replace``)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and (frame.f_globals.get("__name__", "").startswith("tunelib.")
                                 or frame.f_globals.get("__name__") == "dataclasses"):
        frame, level = frame.f_back, level + 1
    return level


def _is_default(value: Any, default: Any) -> bool:
    # `is` first: `==` on an arbitrary user object may be ambiguous (arrays) or raise
    return value is default or (type(value) is type(default) and value == default)


def _warn_ignored_fields(config: Any, reasons: Mapping[str, str]) -> None:
    """One warning for each field of ``reasons`` that ``config`` sets: it is ignored.

    Example: ``RunConfig(sync_config=tune.SyncConfig())`` warns "RunConfig(sync_config=...)
    is ignored by tunelib: ...".
    """
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    owner = type(config).__name__
    for name, reason in reasons.items():
        if not _is_default(getattr(config, name), defaults[name]):
            warnings.warn(f"{owner}({name}=...) is ignored by tunelib: {reason}. Remove it to "
                          "silence this warning.", UserWarning, stacklevel=_caller_stacklevel())


def _check_mode(mode: Optional[str], name: str = "mode") -> None:
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"`{name}` must be 'min' or 'max', got {mode!r}.")


def _time_budget_seconds(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(
        f"`time_budget_s` must be a positive number of seconds or a datetime.timedelta, got {value!r}."
    )


@check_class_keywords
@dataclass
class CheckpointConfig:
    """Which checkpoints a trial keeps, and when a class Trainable saves one.

    Args:
        num_to_keep: keep at most this many checkpoints per trial (None keeps all);
            the latest checkpoint is always kept.
        checkpoint_score_attribute: the reported metric that ranks checkpoints (default:
            recency).
        checkpoint_score_order: "max" or "min".
        checkpoint_frequency: a class Trainable saves every this many iterations (0: never).
        checkpoint_at_end: a class Trainable saves once more when it stops.
    """

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: Optional[str] = "max"
    checkpoint_frequency: Optional[int] = 0
    checkpoint_at_end: Optional[bool] = None
    _checkpoint_keep_all_ranks: Optional[bool] = _DEPRECATED
    _checkpoint_upload_from_workers: Optional[bool] = _DEPRECATED

    _IGNORED = {
        "_checkpoint_keep_all_ranks": _DEPRECATED_IN_RAY,
        "_checkpoint_upload_from_workers": _DEPRECATED_IN_RAY,
    }

    def __post_init__(self):
        _warn_ignored_fields(self, self._IGNORED)
        if self.num_to_keep is not None and (
            not isinstance(self.num_to_keep, int) or self.num_to_keep <= 0
        ):
            raise ValueError(
                f"`num_to_keep` must be a positive integer or None, got {self.num_to_keep!r}."
            )
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(
                "`checkpoint_score_order` must be 'max' or 'min', "
                f"got {self.checkpoint_score_order!r}."
            )
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(
                "`checkpoint_frequency` must be a non-negative integer, "
                f"got {self.checkpoint_frequency!r}."
            )


@check_class_keywords
@dataclass
class FailureConfig:
    """How often a trial is retried after it fails.

    Args:
        max_failures: retries per trial (the trial's Prefect flow-run retries); -1 retries
            without limit, 0 never.
        fail_fast: stop the whole experiment at the first trial failure; "raise" re-raises
            the trial's exception from ``fit()``.
    """

    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self):
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(
                f"`max_failures` must be an integer >= -1 (-1: unlimited), got {self.max_failures!r}."
            )
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(f"`fail_fast` must be True, False or 'raise', got {self.fail_fast!r}.")


@check_class_keywords
@dataclass
class RunConfig:
    """Where an experiment writes, how it stops, and how it handles failures.

    ``storage_path`` is a local directory or an fsspec URL (``memory://``, ``s3://``...);
    the default is ``~/ray_results`` as in Ray.
    """

    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Any = None
    verbose: Any = None
    stop: Union[Mapping, Callable[[str, Mapping], bool], Any, None] = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Any = False
    local_dir: Optional[str] = None
    # tunelib's own, after Ray's fields: which executor runs the trials (None: worker
    # processes on this machine). An object with
    # ``create_executor(spec, num_workers, payload, recorder) -> Executor``.
    executor: Any = None

    # Ray fields the engine does not honour, and why
    _IGNORED = {
        "sync_config": "results and checkpoints are written straight to `storage_path`, so "
                       "there is nothing to sync (and files a trial writes in its working "
                       "directory are not uploaded)",
    }

    def __post_init__(self):
        _warn_ignored_fields(self, self._IGNORED)
        if self.executor is not None and not hasattr(self.executor, "create_executor"):
            raise TypeError(
                "`executor` must be None (local worker processes) or an executor config such "
                f"as tunelib.tune.PrefectWorkers(...), got {type(self.executor).__name__}."
            )
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if not isinstance(self.failure_config, FailureConfig):
            raise TypeError(
                f"`failure_config` must be a tune.FailureConfig, got {type(self.failure_config).__name__}."
            )
        if not isinstance(self.checkpoint_config, CheckpointConfig):
            raise TypeError(
                "`checkpoint_config` must be a tune.CheckpointConfig, "
                f"got {type(self.checkpoint_config).__name__}."
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()
                                      or "/" in self.name):
            raise ValueError(f"`name` must be a non-empty string without '/', got {self.name!r}.")
        if self.storage_path is None and self.local_dir is not None:
            self.storage_path = self.local_dir


@check_class_keywords
@dataclass
class TuneConfig:
    """What to optimise and how to search.

    Args:
        mode: "min" or "max".
        metric: the reported metric to optimise.
        search_alg: a Searcher or SearchAlgorithm (default: BasicVariantGenerator).
        scheduler: a TrialScheduler (default: FIFOScheduler).
        num_samples: how many times to sample the space (grid × num_samples trials);
            -1 samples until a stopper or ``time_budget_s`` ends the experiment.
        max_concurrent_trials: at most this many trials at once (default: as CPUs allow).
        time_budget_s: stop the experiment after this many seconds (or a timedelta).
        reuse_actors: reuse a class Trainable's instance for the next trial (``reset_config``).
        trial_name_creator / trial_dirname_creator: ``fn(trial) -> str``.
    """

    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Union[int, float, datetime.timedelta, None] = None
    reuse_actors: bool = False
    trial_name_creator: Optional[Callable[[Any], str]] = None
    trial_dirname_creator: Optional[Callable[[Any], str]] = None
    chdir_to_trial_dir: bool = _DEPRECATED

    _IGNORED = {"chdir_to_trial_dir": "deprecated in Ray; the environment variable "
                                      "RAY_CHDIR_TO_TRIAL_DIR=0 keeps trials in the "
                                      "driver's directory"}

    def __post_init__(self):
        _warn_ignored_fields(self, self._IGNORED)
        _check_mode(self.mode)
        if self.metric is not None and not isinstance(self.metric, str):
            raise TypeError(f"`metric` must be a string, got {self.metric!r}.")
        if (
            not isinstance(self.num_samples, int)
            or isinstance(self.num_samples, bool)
            or (self.num_samples < 1 and self.num_samples != -1)
        ):
            raise ValueError(
                f"`num_samples` must be a positive integer or -1 (unlimited), got {self.num_samples!r}."
            )
        if self.max_concurrent_trials is not None and (
            not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 1
        ):
            raise ValueError(
                "`max_concurrent_trials` must be a positive integer or None, "
                f"got {self.max_concurrent_trials!r}."
            )
        _time_budget_seconds(self.time_budget_s)

    @property
    def time_budget_seconds(self) -> Optional[float]:
        return _time_budget_seconds(self.time_budget_s)
