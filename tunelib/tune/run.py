"""``tune.run``: Ray's legacy one-call API, returning an ``ExperimentAnalysis``."""

from __future__ import annotations

import datetime
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from tunelib._validation import check_keywords
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from tunelib.error import TuneError


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


def _resume_policy(resume, resume_config, run_config: RunConfig):
    """Ray's ``resume=`` values: True / "AUTO" / "LOCAL" / "REMOTE", optionally with
    "+ERRORED", "+ERRORED_ONLY", "+RESTART_ERRORED" or "+RESTART_ERRORED_ONLY"; "AUTO"
    starts afresh when there is nothing to resume."""
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
    if not run_config.name:
        raise ValueError("tune.run(resume=...) needs `name`: the experiment to continue.")
    if base == "AUTO" and not _has_state(run_config):
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

    Raises ``TuneError`` when a trial failed for good and ``raise_on_failed_trial`` is set.
    """
    from tunelib.runner import run_experiment

    if restore is not None:
        raise NotImplementedError(
            "`restore` (start one trial from a checkpoint path) is not supported; resume the "
            "experiment with `resume=True` or tune.Tuner.restore(path, trainable).fit()."
        )
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
    )
    run_config = RunConfig(
        name=name,
        storage_path=storage_path or local_dir,
        storage_filesystem=storage_filesystem,
        failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
        checkpoint_config=_checkpoint_config(checkpoint_config, keep_checkpoints_num,
                                             checkpoint_score_attr, checkpoint_freq,
                                             checkpoint_at_end),
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
        resume=_resume_policy(resume, resume_config, run_config),
    )
    failed = [t for t in analysis.trials if t.status == "ERROR"]
    if failed and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {[str(t) for t in failed]}")
    return analysis
