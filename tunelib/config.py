"""The configuration dataclasses of Ray Tune: TuneConfig, RunConfig, CheckpointConfig, FailureConfig.

Field names, order and defaults follow Ray 2.60 exactly (see shared/reference); validation
happens here, at construction, so a bad value fails before any trial starts.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Union

from tunelib._validation import check_class_keywords

_DEPRECATED = "DEPRECATED"


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

    def __post_init__(self):
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
    # ``create_executor(spec, num_workers, payload) -> Executor``.
    executor: Any = None

    def __post_init__(self):
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

    def __post_init__(self):
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
