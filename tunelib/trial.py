"""The Trial record: one configuration's life in an experiment, as the controller sees it.

Schedulers and stoppers receive these; they read ``trial_id``, ``config``, ``status``,
``last_result``, ``checkpoint`` and may call nothing that does I/O. Users meet the same
objects in callbacks, ``ExperimentAnalysis.trials`` and ``tune.run_experiments()``'s
return value, with the attributes of Ray's ``ray.tune.experiment.Trial`` that describe a
trial (``path``, ``storage``, ``experiment_tag``, ``checkpoint``...). Example::

    trial = Trial("train_fn", config={"lr": 0.1})
    trial.set_storage(StorageContext(pyarrow.fs.LocalFileSystem(), "/tmp/results/exp"))
    trial.dirname = "train_fn_3f2a1_00000_0_lr=0.1000_2026-11-29_12-00-00"
    trial.path          # '/tmp/results/exp/train_fn_3f2a1_00000_0_lr=0.1000_2026-11-29_12-00-00'
"""

from __future__ import annotations

import posixpath
import time
import uuid
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, Dict, Optional

from tunelib._lifecycle import StoppedBy, TrialStatus

# module-level names for the statuses (schedulers import them); one definition: TrialStatus
PENDING = TrialStatus.PENDING
RUNNING = TrialStatus.RUNNING
PAUSED = TrialStatus.PAUSED
TERMINATED = TrialStatus.TERMINATED
ERROR = TrialStatus.ERROR

STATUSES = tuple(TrialStatus)


def generate_trial_id() -> str:
    """Ray's id for a trial a searcher suggests: 8 hex digits (``Trial.generate_id()``)."""
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class StorageContext:
    """Where a trial's files live: the attributes of Ray's ``StorageContext`` that a script
    reads off ``trial.storage``.

    Args:
        storage_filesystem: the ``pyarrow.fs.FileSystem`` holding the experiment.
        experiment_fs_path: the experiment directory on it (``storage_path/name``).
        trial_dir_name: the trial's directory, relative to the experiment's.
    """

    storage_filesystem: Any
    experiment_fs_path: str
    trial_dir_name: Optional[str] = None

    @property
    def storage_fs_path(self) -> str:
        """``storage_path`` on the filesystem: the experiment directory's parent."""
        return posixpath.dirname(self.experiment_fs_path.rstrip("/"))

    @property
    def experiment_dir_name(self) -> str:
        return posixpath.basename(self.experiment_fs_path.rstrip("/"))

    @property
    def trial_fs_path(self) -> Optional[str]:
        if not self.trial_dir_name:
            return None
        return posixpath.join(self.experiment_fs_path, self.trial_dir_name)

    @property
    def _is_local(self) -> bool:
        return getattr(self.storage_filesystem, "type_name", None) == "local"

    # tunelib writes straight to storage: the "driver staging" dirs of Ray are the
    # storage dirs themselves when those are on local disk, and do not exist otherwise
    @property
    def experiment_driver_staging_path(self) -> Optional[str]:
        return self.experiment_fs_path if self._is_local else None

    @property
    def trial_driver_staging_path(self) -> Optional[str]:
        return self.trial_fs_path if self._is_local else None


@dataclass(eq=False)
class Trial:
    """One trial of an experiment (Ray's ``ray.tune.experiment.Trial``).

    ``eq=False`` keeps identity semantics: trials are used as dict keys by schedulers.
    As in Ray, the trainable's name comes first and everything else is a keyword;
    ``trial_id`` defaults to a fresh 8-hex-digit id.
    """

    # Ray's class attributes: ``Trial.PENDING`` ... ``Trial.ERROR``
    PENDING: ClassVar[TrialStatus] = TrialStatus.PENDING
    RUNNING: ClassVar[TrialStatus] = TrialStatus.RUNNING
    PAUSED: ClassVar[TrialStatus] = TrialStatus.PAUSED
    TERMINATED: ClassVar[TrialStatus] = TrialStatus.TERMINATED
    ERROR: ClassVar[TrialStatus] = TrialStatus.ERROR

    trainable_name: str
    _: KW_ONLY
    config: Dict[str, Any] = field(default_factory=dict)
    trial_id: str = field(default_factory=generate_trial_id)
    experiment_tag: str = ""
    evaluated_params: Dict[str, Any] = field(default_factory=dict)
    dirname: str = ""                      # relative to the experiment dir
    status: TrialStatus = TrialStatus.PENDING
    last_result: Dict[str, Any] = field(default_factory=dict)
    num_failures: int = 0
    # the error file's name in the trial dir ("error.txt"), once the trial failed
    error_file: Optional[str] = None
    error_msg: Optional[str] = None
    # name of the latest persisted checkpoint dir (e.g. "checkpoint_000003"), or None
    checkpoint_dir_name: Optional[str] = None
    # the latest Checkpoint object (tunelib.checkpoint.Checkpoint), set by the controller
    checkpoint: Any = None
    # a checkpoint to start from instead of the trial's own (PBT exploit, restore)
    restore_from: Any = None
    # the checkpoint directory ``tune.run(restore=...)`` starts the trial from (Ray's)
    restore_path: Optional[str] = None
    resources: Dict[str, float] = field(default_factory=lambda: {"cpu": 1.0})
    custom_trial_name: Optional[str] = None
    start_time: Optional[float] = None
    # number of the trial in creation order (0, 1, ...), part of the dir name
    index: int = 0
    # (checkpoint dir name, metrics) of the checkpoints kept on storage, oldest first
    kept_checkpoints: list = field(default_factory=list)
    next_checkpoint_index: int = 0
    # how many attempts (first run, retries, resumes after a pause) have started
    attempts: int = 0
    # what the latest checkpoint was taken at: (training_iteration, time_total_s)
    checkpoint_progress: tuple = (0, 0.0)
    # results of the current attempt (the metric is validated on the first)
    results_seen: int = 0
    # who ended the trial early, and why (None: it ran until its trainable returned)
    stopped_by: Optional[StoppedBy] = None
    stop_reason: str = ""
    # Ray's running statistics of the numeric results (what Ray's get_best_trial reads)
    metric_analysis: Any = field(default=None, repr=False)
    # where the experiment lives (trial_dir_name unset: ``dirname`` says that); set by
    # whoever places the trial (the controller, a reader) through ``set_storage``
    experiment_storage: Optional[StorageContext] = field(default=None, repr=False)

    @classmethod
    def generate_id(cls) -> str:
        """A fresh trial id, as Ray makes them: 8 hex digits."""
        return generate_trial_id()

    def is_finished(self) -> bool:
        """Whether the trial has ended (TERMINATED or ERROR); a method, as in Ray."""
        return self.status in (TERMINATED, ERROR)

    def __str__(self) -> str:
        """Ray's trial name: ``<trainable>[_<config["env"]>]_<trial_id>``, or the custom one."""
        if self.custom_trial_name:
            return self.custom_trial_name
        identifier = self.trainable_name
        if "env" in self.config:
            env = self.config["env"]
            identifier += f"_{env.__name__ if isinstance(env, type) else env}"
        return f"{identifier}_{self.trial_id}".replace("/", "_")

    __repr__ = __str__

    # ------------------------------------------------------------------ Ray's setters
    def set_config(self, config: Dict[str, Any]) -> None:
        self.config = config

    def set_experiment_tag(self, tag: str) -> None:
        self.experiment_tag = tag

    def set_status(self, status: str) -> None:
        """Set the status; the first move to RUNNING stamps ``start_time``, as in Ray."""
        self.status = TrialStatus(status)
        if self.status == TrialStatus.RUNNING and self.start_time is None:
            self.start_time = time.time()

    def set_storage(self, new_storage: StorageContext) -> None:
        """Place the trial in an experiment directory; a ``trial_dir_name`` it carries
        becomes the trial's ``dirname``."""
        if not new_storage.trial_dir_name:   # (frozen: one may place many trials)
            self.experiment_storage = new_storage
            return
        self.dirname = new_storage.trial_dir_name
        self.experiment_storage = StorageContext(new_storage.storage_filesystem,
                                                 new_storage.experiment_fs_path)

    def update_last_result(self, result: Dict[str, Any]) -> None:
        """Take ``result`` as the latest one. As in Ray, the driver's copy of a result
        carries the trial's ``experiment_tag`` (the trial's own result.json does not)."""
        if self.experiment_tag:
            result.update(experiment_tag=self.experiment_tag)
        self.last_result = result
        if self.metric_analysis is None:
            from tunelib._layout import MetricAnalysis

            self.metric_analysis = MetricAnalysis()
        self.metric_analysis.update(result)

    # ------------------------------------------------------------------ where it lives
    @property
    def storage(self) -> Optional[StorageContext]:
        """The trial's ``StorageContext`` (None until the trial is placed)."""
        if self.experiment_storage is None:
            return None
        return StorageContext(self.experiment_storage.storage_filesystem,
                              self.experiment_storage.experiment_fs_path, self.dirname or None)

    def _storage_attribute(self, name: str) -> Optional[str]:
        storage = self.storage
        return getattr(storage, name) if storage is not None else None

    @property
    def relative_logdir(self) -> Optional[str]:
        """The trial's directory, relative to the experiment's (Ray's name for ``dirname``)."""
        return self.dirname or None

    @property
    def path(self) -> Optional[str]:
        """The trial's directory on its storage filesystem."""
        return self._storage_attribute("trial_fs_path")

    @property
    def local_path(self) -> Optional[str]:
        """The trial's directory on local disk: ``path`` for local storage, else None
        (tunelib keeps no local staging copy of remote storage)."""
        return self._storage_attribute("trial_driver_staging_path")

    @property
    def logdir(self) -> Optional[str]:
        """Removed in Ray (it raises there too): use ``local_path`` or ``path``."""
        raise DeprecationWarning("Use `local_path` instead of `logdir`.")

    @property
    def experiment_dir_name(self) -> Optional[str]:
        return self._storage_attribute("experiment_dir_name")

    @property
    def remote_experiment_path(self) -> Optional[str]:
        """The experiment directory on its storage filesystem."""
        return self._storage_attribute("experiment_fs_path")

    @property
    def local_experiment_path(self) -> Optional[str]:
        return self._storage_attribute("experiment_driver_staging_path")

    @property
    def local_dir(self) -> Optional[str]:
        """Deprecated in Ray: ``local_experiment_path``."""
        return self.local_experiment_path

    # ------------------------------------------------------------------ results
    @property
    def has_reported_at_least_once(self) -> bool:
        return bool(self.last_result)

    @property
    def node_ip(self) -> Optional[str]:
        """The address of the machine that ran the trial's latest attempt."""
        return self.last_result.get("node_ip")

    def has_checkpoint(self) -> bool:
        return self.checkpoint is not None

    def get_error(self) -> Optional[str]:
        """The text of the trial's error file (every failure, numbered), or None.

        Reads storage: call it from a callback or after the run, not from a scheduler.
        """
        from tunelib import storage

        if not self.error_file or self.path is None:
            return None
        fs = self.experiment_storage.storage_filesystem
        file_path = storage.join(self.path, self.error_file)
        return storage.read_text(fs, file_path) if storage.exists(fs, file_path) else None

    def get_pickled_error(self) -> Optional[BaseException]:
        """The exception of the trial's latest failure, unpickled from ``error.pkl``
        (None when there is none, or it cannot be unpickled here)."""
        from tunelib import _reader

        if not self.error_file or self.path is None:
            return None
        return _reader.load_error(self.experiment_storage.storage_filesystem, self.path,
                                  text_name=None)
