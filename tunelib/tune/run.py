"""``tune.run``: Ray's legacy one-call API, returning an ``ExperimentAnalysis``."""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from tunelib._validation import check_keywords
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from tunelib.error import TuneError

logger = logging.getLogger("tunelib")


def _checkpoint_config(checkpoint_config, keep_checkpoints_num, checkpoint_score_attr,
                       checkpoint_freq, checkpoint_at_end) -> CheckpointConfig:
    legacy = (keep_checkpoints_num is not None or checkpoint_score_attr is not None
              or checkpoint_freq or checkpoint_at_end)
    if checkpoint_config is not None:
        if legacy:
            raise ValueError(
                "Pass either `checkpoint_config` or the legacy `keep_checkpoints_num` / "
                "`checkpoint_score_attr` / `checkpoint_freq` / `checkpoint_at_end`, not both."
            )
        return checkpoint_config
    order = "max"
    attr = checkpoint_score_attr
    if attr is not None and attr.startswith("min-"):
        attr, order = attr[len("min-"):], "min"
    return CheckpointConfig(
        num_to_keep=keep_checkpoints_num,
        checkpoint_score_attribute=attr,
        checkpoint_score_order=order,
        checkpoint_frequency=checkpoint_freq,
        checkpoint_at_end=checkpoint_at_end or None,
    )


_RESUME_BASES = ("TRUE", "AUTO", "LOCAL", "REMOTE")


def _resume_policy(resume, resume_config, run_config: RunConfig, fail_fast=False):
    """Ray's ``resume=`` values: True / "AUTO" / "LOCAL" / "REMOTE", optionally with
    "+ERRORED", "+ERRORED_ONLY", "+RESTART_ERRORED" or "+RESTART_ERRORED_ONLY". With
    nothing to resume, the experiment starts afresh (logged, unless "AUTO"), as in Ray."""
    from tunelib.resume import RESTART, RESUME, SKIP, ResumePolicy

    if resume in (None, False) and resume_config is None:
        return None
    base, _, suffix = str(resume if resume is not None else True).upper().partition("+")
    if base not in _RESUME_BASES or suffix not in ("", "ERRORED", "ERRORED_ONLY",
                                                   "RESTART_ERRORED", "RESTART_ERRORED_ONLY"):
        raise ValueError(
            f"`resume` must be True, False, or one of {list(_RESUME_BASES)} optionally followed "
            f"by +ERRORED, +ERRORED_ONLY, +RESTART_ERRORED or +RESTART_ERRORED_ONLY; got {resume!r}."
        )
    if not run_config.name or not _has_state(run_config):
        # Ray logs this and starts the experiment afresh (it raises only with fail_fast)
        if base != "AUTO":
            message = (
                f"Tried to resume experiment {run_config.name!r}, but no experiment state "
                "file of the form 'experiment_state-{}.json' was found. This is expected if "
                "you are launching a new experiment."
            )
            if fail_fast:
                raise ValueError(message)
            logger.error(message + " Restarting experiment.")
        return None
    if resume_config is not None:
        return ResumePolicy(resume_config.finished, resume_config.unfinished,
                            resume_config.errored)
    errored = RESTART if suffix.startswith("RESTART") else RESUME if suffix else SKIP
    unfinished = SKIP if suffix.endswith("ONLY") else RESUME
    return ResumePolicy(unfinished=unfinished, errored=errored)


def _has_state(run_config: RunConfig) -> bool:
    from tunelib import _layout, storage
    from tunelib.runner import storage_root

    try:
        fs, root = storage_root(run_config)
        return _layout.find_experiment_state(fs, storage.join(root, run_config.name)) is not None
    except (ValueError, OSError):
        return False


def _restore_path(restore) -> str:
    """``tune.run(restore=...)``: a local checkpoint directory, made absolute as Ray does."""
    path = os.path.abspath(os.path.expanduser(os.fspath(restore)))
    if not os.path.isdir(path):
        raise ValueError(
            f"`restore` must be a checkpoint directory on this machine, got {restore!r} "
            f"({path} is not a directory). To continue an experiment, use `resume=True`."
        )
    return path


@check_keywords
def run(
    run_or_experiment: Union[str, Callable, type],
    *,
    name: Optional[str] = None,
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    stop: Union[Mapping, Callable[[str, Mapping], bool], Any, None] = None,
    time_budget_s: Union[int, float, datetime.timedelta, None] = None,
    config: Optional[Dict[str, Any]] = None,
    resources_per_trial: Union[None, Mapping[str, Union[float, int, Mapping]], Any] = None,
    num_samples: int = 1,
    storage_path: Optional[str] = None,
    storage_filesystem=None,
    search_alg=None,
    scheduler=None,
    checkpoint_config: Optional[CheckpointConfig] = None,
    verbose=None,
    progress_reporter=None,
    log_to_file: bool = False,
    trial_name_creator: Optional[Callable] = None,
    trial_dirname_creator: Optional[Callable] = None,
    sync_config=None,
    export_formats: Optional[Sequence] = None,
    max_failures: int = 0,
    fail_fast: bool = False,
    restore: Optional[str] = None,
    resume: Union[bool, str, None] = None,
    resume_config=None,
    reuse_actors: bool = False,
    raise_on_failed_trial: bool = True,
    callbacks: Optional[Sequence] = None,
    max_concurrent_trials: Optional[int] = None,
    keep_checkpoints_num: Optional[int] = None,
    checkpoint_score_attr: Optional[str] = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = False,
    chdir_to_trial_dir: bool = "DEPRECATED",
    local_dir: Optional[str] = None,
    _remote: Optional[bool] = None,
    _remote_string_queue=None,
    _entrypoint=None,
):
    """Run an experiment and return its ``ExperimentAnalysis`` (Ray's ``tune.run``).

    Example::

        analysis = tune.run(
            train_fn,
            config={"lr": tune.grid_search([0.01, 0.1])},
            metric="loss", mode="min", stop={"training_iteration": 10},
            max_failures=2, storage_path="/tmp/results", name="exp",
        )
        print(analysis.best_config)

    ``run_or_experiment`` may also be an ``Experiment`` or a list (see
    ``tunelib.tune.tune``); ``restore`` starts each trial from that checkpoint directory.

    Raises ``TuneError`` when a trial failed for good and ``raise_on_failed_trial`` is set.
    """
    arguments = dict(locals())  # this call's arguments, first thing: nothing else is bound
    from tunelib.runner import TUNE_RUN_RESUME_CALL, run_experiment
    from tunelib.tune.experiment import Experiment

    if isinstance(run_or_experiment, (Experiment, list)):  # the legacy Experiment API
        from tunelib.tune.tune import run_experiment_objects

        return run_experiment_objects(arguments.pop("run_or_experiment"), arguments)
    if restore is not None:
        restore = _restore_path(restore)
    if isinstance(scheduler, str):  # Ray's names, e.g. "fifo", "async_hyperband"
        from tunelib.schedulers import create_scheduler

        scheduler = create_scheduler(scheduler)
    tune_config = TuneConfig(
        mode=mode,
        metric=metric,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent_trials,
        time_budget_s=time_budget_s,
        reuse_actors=reuse_actors,
        trial_name_creator=trial_name_creator,
        trial_dirname_creator=trial_dirname_creator,
        chdir_to_trial_dir=chdir_to_trial_dir,
    )
    run_config = RunConfig(
        name=name,
        storage_path=storage_path or local_dir,
        storage_filesystem=storage_filesystem,
        failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
        checkpoint_config=_checkpoint_config(checkpoint_config, keep_checkpoints_num,
                                             checkpoint_score_attr, checkpoint_freq,
                                             checkpoint_at_end),
        sync_config=sync_config,
        verbose=verbose,
        stop=stop,
        callbacks=list(callbacks) if callbacks else None,
        progress_reporter=progress_reporter,
        log_to_file=log_to_file,
    )
    analysis = run_experiment(
        run_or_experiment,
        param_space=config,
        tune_config=tune_config,
        run_config=run_config,
        resources_per_trial=resources_per_trial,
        resume=_resume_policy(resume, resume_config, run_config, fail_fast),
        export_formats=export_formats,
        # every trial starts from the checkpoint ``restore`` names (Ray: "only makes sense
        # with one trial")
        restore_path=restore,
        restore_call=TUNE_RUN_RESUME_CALL,
    )
    # Ray's rule: trials not TERMINATED raise, unless the experiment was interrupted
    # (Ctrl-C: its unfinished trials are the ones left RUNNING/PENDING/PAUSED) - then they
    # are logged, as with raise_on_failed_trial=False
    incomplete = [str(t) for t in analysis.trials if t.status != "TERMINATED"]
    interrupted = any(t.status not in ("TERMINATED", "ERROR") for t in analysis.trials)
    if incomplete and raise_on_failed_trial and not interrupted:
        raise TuneError(f"Trials did not complete: {incomplete}")
    if incomplete:
        logger.error("Trials did not complete: %s", incomplete)
    return analysis
