"""``DataParallelTrainer``: run ``train_loop_per_worker`` on N worker processes as one
trial (Ray Train's trainer API).

``fit()`` runs the trainer as an experiment of one trial (one Prefect flow run, one
iteration task run per reporting round) and returns Ray Train's ``Result`` of it (the
checkpoints and the metrics reported with them); ``Tuner(trainer, param_space=
{"train_loop_config": {...}})`` runs one trainer per trial, each with Tune's Result.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable, Dict, Optional

from tunelib.config import RunConfig
from tunelib.train._config import ScalingConfig, TrainingFailedError
from tunelib.train._result import Result, from_trial_dir
from tunelib.train._worker_group import (
    DEFAULT_REPORT_TIMEOUT_S,
    REPORT_TIMEOUT_ENV,
    GroupSpec,
    WorkerGroup,
)


def _takes_config(fn: Callable) -> bool:
    """True for ``fn(config)``, False for ``fn()``; anything else is a TypeError."""
    if not callable(fn):
        raise TypeError(
            f"`train_loop_per_worker` must be a function, got {type(fn).__name__}."
        )
    try:
        sig = inspect.signature(fn)
    except ValueError:
        return True
    for args, takes in (((), False), (({},), True)):
        try:
            sig.bind(*args)
            return takes
        except TypeError:
            continue
    name = getattr(fn, "__name__", "train_loop_per_worker")
    raise TypeError(
        f"`train_loop_per_worker` {name} must take no argument or exactly one (the "
        f"train_loop_config dict), e.g. `def {name}(config):`; its signature is {sig}."
    )


def _check_picklable(name: str, value: Any) -> None:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        raise TypeError(
            f"`{name}` cannot be serialised (cloudpickle) to be sent to the training workers: "
            f"{exc!r}. Create objects such as locks, open files or clients inside "
            "train_loop_per_worker instead."
        ) from exc


class DataParallelTrainer:
    """Run ``train_loop_per_worker`` on ``scaling_config.num_workers`` worker processes.

    Each worker calls ``train.report(metrics, checkpoint=...)`` once per round; a round
    is recorded once all workers reported it (metrics of rank 0, one checkpoint merging
    the directories every rank gave). ``train.get_checkpoint()`` gives every worker the
    checkpoint to resume from after a failure (``FailureConfig(max_failures)``).
    ``fit()`` returns the latest checkpoint and the metrics reported with it.

    Example::

        def train_loop_per_worker(config):
            for epoch in range(config["epochs"]):
                train.report({"epoch": epoch, "rank": train.get_context().get_world_rank()})

        trainer = DataParallelTrainer(
            train_loop_per_worker,
            train_loop_config={"epochs": 3},
            scaling_config=ScalingConfig(num_workers=2),
        )
        result = trainer.fit()
    """

    _backend_name: Optional[str] = None

    def __init__(
        self,
        train_loop_per_worker: Callable,
        *,
        train_loop_config: Optional[Dict] = None,
        backend_config: Any = None,
        scaling_config: Optional[ScalingConfig] = None,
        run_config: Optional[RunConfig] = None,
        datasets: Optional[Dict[str, Any]] = None,
        dataset_config: Any = None,
        resume_from_checkpoint: Any = None,
        metadata: Optional[Dict[str, Any]] = None,
        validation_config: Any = None,
    ):
        self._takes_config = _takes_config(train_loop_per_worker)
        if train_loop_config is not None and not isinstance(train_loop_config, dict):
            raise TypeError(
                f"`train_loop_config` must be a dict, got {type(train_loop_config).__name__}."
            )
        if scaling_config is None:
            scaling_config = ScalingConfig()
        if not isinstance(scaling_config, ScalingConfig):
            raise TypeError(
                "`scaling_config` must be a train.ScalingConfig, "
                f"got {type(scaling_config).__name__}."
            )
        if run_config is None:
            run_config = RunConfig()
        if not isinstance(run_config, RunConfig):
            raise TypeError(f"`run_config` must be a train.RunConfig, got {type(run_config).__name__}.")
        if datasets is not None and not isinstance(datasets, dict):
            raise TypeError(f"`datasets` must be a dict of name -> data, got {type(datasets).__name__}.")
        if resume_from_checkpoint is not None:
            raise ValueError(
                "`resume_from_checkpoint` is deprecated in Ray Train and not supported: load "
                "the checkpoint inside train_loop_per_worker (pass its path in train_loop_config)."
            )
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = dict(train_loop_config or {})
        self.backend_config = backend_config
        self.scaling_config = scaling_config
        self.run_config = run_config
        self.datasets = dict(datasets or {})
        self.metadata = dict(metadata or {})
        _check_picklable("train_loop_per_worker", train_loop_per_worker)
        _check_picklable("train_loop_config", self.train_loop_config)
        if self.datasets:
            _check_picklable("datasets", self.datasets)

    def _backend_options(self) -> Optional[Dict[str, Any]]:
        return None

    def as_trainable(self) -> "_TrainerTrainable":
        """This trainer as a Tune trainable ``fn(config)`` (``config["train_loop_config"]``
        overrides the trainer's own train_loop_config); what ``Tuner(trainer)`` runs."""
        try:
            timeout = float(os.environ.get(REPORT_TIMEOUT_ENV, DEFAULT_REPORT_TIMEOUT_S))
        except ValueError:
            raise ValueError(
                f"{REPORT_TIMEOUT_ENV} must be a number of seconds, "
                f"got {os.environ[REPORT_TIMEOUT_ENV]!r}."
            ) from None
        return _TrainerTrainable(type(self).__name__, self, timeout)

    def fit(self) -> Result:
        """Run the training to completion; returns its ``Result``, Ray Train's view of it:
        ``metrics`` are those reported with the latest checkpoint, ``metrics_dataframe``
        has one row per kept checkpoint (reports without a checkpoint are left out).

        Raises:
            TrainingFailedError: the run failed (after ``FailureConfig.max_failures``
                retries); the cause is chained.
        """
        from tunelib.config import TuneConfig
        from tunelib.result_grid import ResultGrid
        from tunelib.runner import run_experiment

        param_space = {"train_loop_config": self.train_loop_config} if self.train_loop_config else {}
        analysis = run_experiment(self, param_space=param_space, tune_config=TuneConfig(),
                                  run_config=self.run_config)
        trial = ResultGrid(analysis)[0]
        if trial.error is not None:
            error = trial.error
            if isinstance(error, TrainingFailedError):
                raise error
            raise TrainingFailedError(
                f"Training failed: {type(error).__name__}: {error}. The trial's error.txt in "
                f"{trial.path} has the traceback."
            ) from error
        return from_trial_dir(trial.filesystem, trial.path, self.run_config.checkpoint_config)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} scaling_config={self.scaling_config!r} "
                f"run_config={self.run_config!r}>")


class _TrainerTrainable:
    """The function trainable of one trainer run, named after the trainer class (so the
    experiment and trial dirs read ``TorchTrainer_...`` as in Ray)."""

    def __init__(self, name: str, trainer: DataParallelTrainer, report_timeout_s: float):
        self.__name__ = name
        self._train_fn = trainer.train_loop_per_worker
        self._takes_config = trainer._takes_config
        self._config = trainer.train_loop_config
        self._datasets = trainer.datasets
        self._scaling = trainer.scaling_config
        self._backend = trainer._backend_options()
        self._report_timeout_s = report_timeout_s
        self._tunelib_resources = trainer.scaling_config._trial_resources()

    def __call__(self, config: Dict[str, Any]) -> None:
        from tunelib import session as _session

        trial_session = _session._require_session("DataParallelTrainer")
        overrides = (config or {}).get("train_loop_config") or {}
        merged = {**self._config, **overrides}
        spec = GroupSpec(
            train_fn=self._train_fn,
            takes_config=self._takes_config,
            config=merged,
            num_workers=self._scaling.num_workers,
            backend=self._backend,
            datasets=self._datasets or None,
            use_gpu=self._scaling.use_gpu,
            cpus_per_worker=self._scaling.num_cpus_per_worker,
            report_timeout_s=self._report_timeout_s,
            trial=_trial_fields(trial_session.spec),
            checkpoint=_local_checkpoint(trial_session.latest_checkpoint),
            sys_path=list(sys.path),
        )
        WorkerGroup(spec, trial_session).run()


def _trial_fields(spec) -> Dict[str, Any]:
    names = ("trial_name", "trial_id", "trial_path", "experiment_name", "experiment_uri",
             "storage_uri", "resources")
    return {n: getattr(spec, n) for n in names if hasattr(spec, n)}


def _local_checkpoint(checkpoint):
    """The resume checkpoint as something every rank process can open."""
    if checkpoint is None:
        return None
    from tunelib import storage
    from tunelib.checkpoint import Checkpoint

    if isinstance(checkpoint, Checkpoint) and storage.is_local(checkpoint.filesystem):
        return checkpoint
    # remote or driver-memory storage: one local copy for all ranks
    return Checkpoint.from_directory(checkpoint.to_directory())
