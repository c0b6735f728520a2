"""Ray's ``ray.tune.tune``: ``run`` and ``run_experiments``, the legacy entry points that
take ``Experiment`` objects.

tunelib's controller runs one experiment at a time, so several experiments (a list given
to ``tune.run``, or to ``run_experiments``) run one after another, each in its own
directory; the trials and their results are Ray's, only the experiments do not
interleave. Example::

    trials = tune.run_experiments({
        "small": {"run": train_fn, "config": {"width": 8}},
        "large": {"run": train_fn, "config": {"width": 64}},
    })
    [t.last_result["loss"] for t in trials]
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from tunelib._validation import check_keywords
from tunelib.error import TuneError
from tunelib.trial import Trial
from tunelib.tune.experiment.experiment import Experiment, _convert_to_experiment_list
from tunelib.tune.run import run

__all__ = ["run", "run_experiments"]

# tune.run's arguments that describe one experiment: an Experiment carries its own
_EXPERIMENT_ARGS = (
    "name", "stop", "time_budget_s", "config", "resources_per_trial", "num_samples",
    "storage_path", "storage_filesystem", "sync_config", "checkpoint_config",
    "trial_name_creator", "trial_dirname_creator", "log_to_file", "export_formats",
    "max_failures", "restore", "local_dir", "keep_checkpoints_num", "checkpoint_score_attr",
    "checkpoint_freq", "checkpoint_at_end",
)


def _warn_sequential(count: int, stacklevel: int) -> None:
    warnings.warn(
        f"tunelib runs these {count} experiments one after another, not concurrently as Ray "
        "does: its controller runs one experiment at a time. Each gets its own directory and "
        "the same trials.", UserWarning, stacklevel=stacklevel)


def _run_each(experiments: List[Experiment], run_args: Dict[str, Any]) -> list:
    """``tune.run`` for each experiment in turn with the experiment-wide ``run_args``;
    raises TuneError at the end, as one Ray run would, when a trial failed for good."""
    scheduler = run_args.get("scheduler")
    if isinstance(scheduler, str):  # one scheduler for all, as in one Ray run
        from tunelib.schedulers import create_scheduler

        run_args = dict(run_args, scheduler=create_scheduler(scheduler))
    raise_on_failed_trial = run_args.pop("raise_on_failed_trial", True)
    analyses = []
    for experiment in experiments:
        trainable, experiment_args = experiment._tune_run_arguments()
        analyses.append(run(trainable, **experiment_args, **run_args,
                            raise_on_failed_trial=False))
    failed = [t for a in analyses for t in a.trials if t.status == Trial.ERROR]
    if failed and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {[str(t) for t in failed]}")
    return analyses


def run_experiment_objects(run_or_experiment: Union[Experiment, list],
                           run_args: Dict[str, Any]):
    """``tune.run`` given an Experiment or a list (of Experiments or trainables):
    ``run_args`` are ``tune.run``'s other arguments. Returns one ExperimentAnalysis over
    every trial, rooted at the first experiment's directory (Ray's)."""
    from tunelib.analysis import ExperimentAnalysis
    from tunelib.tune.run import _checkpoint_config

    entries = list(run_or_experiment) if isinstance(run_or_experiment, list) \
        else [run_or_experiment]
    if not entries:
        raise ValueError("`run_or_experiment` is an empty list: pass a trainable, an "
                         "Experiment, or a list of them.")
    experiment_args = {k: run_args.pop(k) for k in _EXPERIMENT_ARGS}
    defaults = inspect.signature(run).parameters
    given = sorted(k for k, v in experiment_args.items() if v is not defaults[k].default)
    if given and all(isinstance(e, Experiment) for e in entries):
        warnings.warn(
            f"tune.run({', '.join(f'{k}=...' for k in given)}) is ignored, as in Ray: each "
            "Experiment carries its own. Set it on the Experiment.", UserWarning, stacklevel=4)
    legacy = {k: experiment_args.pop(k) for k in ("keep_checkpoints_num",
                                                  "checkpoint_score_attr",
                                                  "checkpoint_freq", "checkpoint_at_end")}
    experiment_args["checkpoint_config"] = _checkpoint_config(
        experiment_args["checkpoint_config"], *legacy.values())
    experiment_args["storage_path"] = experiment_args["storage_path"] \
        or experiment_args.pop("local_dir")
    experiment_args.pop("local_dir", None)
    experiments = [e if isinstance(e, Experiment)
                   else Experiment(run=e, **experiment_args) for e in entries]
    if len(experiments) > 1:
        if run_args.get("search_alg") is not None:
            raise ValueError(
                "tune.run([...], search_alg=...) with several experiments is not supported by "
                "tunelib: it runs them one after another, and one search algorithm cannot "
                "search two experiments in turn. Run each with its own search_alg."
            )
        _warn_sequential(len(experiments), stacklevel=5)
    analyses = _run_each(experiments, run_args)
    if len(analyses) == 1:
        return analyses[0]
    first = experiments[0].storage
    return ExperimentAnalysis(
        first.experiment_fs_path, storage_filesystem=first.storage_filesystem,
        trials=[t for a in analyses for t in a.trials],
        default_metric=run_args.get("metric"), default_mode=run_args.get("mode"),
    )


@check_keywords
def run_experiments(
    experiments: Union[Experiment, Mapping, Sequence[Union[Experiment, Mapping]]],
    scheduler=None,
    verbose=None,
    progress_reporter=None,
    resume: Union[bool, str, None] = None,
    resume_config=None,
    reuse_actors: bool = False,
    raise_on_failed_trial: bool = True,
    concurrent: bool = True,
    callbacks: Optional[Sequence] = None,
    _remote: Optional[bool] = None,
) -> List[Trial]:
    """Run experiments and block until all their trials finish; returns the trials.

    ``experiments`` is an ``Experiment``, a list of them, or ``{name: spec dict}`` with
    the Experiment's arguments (``{"exp": {"run": train_fn, "config": {...}}}``).

    Example::

        trials = tune.run_experiments(Experiment("exp", train_fn, config={"lr": 0.1}))
        trials[0].last_result["loss"], trials[0].path

    Raises ``TuneError`` when a trial failed for good and ``raise_on_failed_trial`` is
    set (after every experiment ran, as with Ray's default ``concurrent=True``).
    """
    experiments = _convert_to_experiment_list(experiments)
    if concurrent and len(experiments) > 1:
        _warn_sequential(len(experiments), stacklevel=3)
    run_args = dict(scheduler=scheduler, verbose=verbose, progress_reporter=progress_reporter,
                    resume=resume, resume_config=resume_config, reuse_actors=reuse_actors,
                    callbacks=callbacks, _remote=_remote)
    trials: List[Trial] = []
    if concurrent:
        for analysis in _run_each(experiments, dict(run_args,
                                                    raise_on_failed_trial=raise_on_failed_trial)):
            trials += analysis.trials
        return trials
    for experiment in experiments:  # Ray: each its own tune.run, raising as it ends
        trials += _run_each([experiment], dict(run_args,
                                               raise_on_failed_trial=raise_on_failed_trial)
                            )[0].trials
    return trials
