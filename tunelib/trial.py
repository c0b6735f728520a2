"""The Trial record: one configuration's life in an experiment, as the controller sees it.

Schedulers and stoppers receive these; they read ``trial_id``, ``config``, ``status``,
``last_result``, ``checkpoint`` and may call nothing that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional

from tunelib._lifecycle import StoppedBy, TrialStatus

# module-level names for the statuses (schedulers import them); one definition: TrialStatus
PENDING = TrialStatus.PENDING
RUNNING = TrialStatus.RUNNING
PAUSED = TrialStatus.PAUSED
TERMINATED = TrialStatus.TERMINATED
ERROR = TrialStatus.ERROR

STATUSES = tuple(TrialStatus)


@dataclass(eq=False)
class Trial:
    """One trial of an experiment.

    ``eq=False`` keeps identity semantics: trials are used as dict keys by schedulers.
    """

    # Ray's class attributes: ``Trial.PENDING`` ... ``Trial.ERROR``
    PENDING: ClassVar[TrialStatus] = TrialStatus.PENDING
    RUNNING: ClassVar[TrialStatus] = TrialStatus.RUNNING
    PAUSED: ClassVar[TrialStatus] = TrialStatus.PAUSED
    TERMINATED: ClassVar[TrialStatus] = TrialStatus.TERMINATED
    ERROR: ClassVar[TrialStatus] = TrialStatus.ERROR

    trial_id: str
    config: Dict[str, Any]
    trainable_name: str
    experiment_tag: str = ""
    evaluated_params: Dict[str, Any] = field(default_factory=dict)
    dirname: str = ""                      # relative to the experiment dir
    status: TrialStatus = TrialStatus.PENDING
    last_result: Dict[str, Any] = field(default_factory=dict)
    num_failures: int = 0
    error_file: Optional[str] = None
    error_msg: Optional[str] = None
    # name of the latest persisted checkpoint dir (e.g. "checkpoint_000003"), or None
    checkpoint_dir_name: Optional[str] = None
    # the latest Checkpoint object (tunelib.checkpoint.Checkpoint), set by the controller
    checkpoint: Any = None
    # a checkpoint to start from instead of the trial's own (PBT exploit, restore)
    restore_from: Any = None
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

    @property
    def is_finished(self) -> bool:
        return self.status in (TERMINATED, ERROR)

    def __str__(self) -> str:
        return self.custom_trial_name or f"{self.trainable_name}_{self.trial_id}"

    __repr__ = __str__

    def set_config(self, config: Dict[str, Any]) -> None:
        self.config = config

    def set_experiment_tag(self, tag: str) -> None:
        self.experiment_tag = tag
