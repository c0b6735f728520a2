"""The executor interface (modelled on Syne Tune's TrialBackend): start, decide, stop, poll.

The controller hands a ``TrialSpec`` to ``start_trial`` and reads ``TrialEvent``s from
``poll``. Every ``result`` event waits for an answer: the controller calls ``decide`` with
CONTINUE, STOP or PAUSE, and the trial's ``report()`` returns (or unwinds) accordingly.
A backend never decides anything itself; it only moves trials and their messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Dict, List, Optional, Protocol, Tuple

from tunelib._lifecycle import Decision


@dataclass
class TrialSpec:
    """Everything a worker needs to run (or resume) one trial attempt."""

    trial_id: str
    trial_name: str
    trial_dirname: str
    experiment_name: str
    experiment_uri: str            # the experiment dir as a URL or local path
    trial_path: str                # the trial dir on its filesystem
    trainable_key: str             # which trainable (sent to each worker once)
    config: Dict[str, Any]
    resources: Dict[str, float] = field(default_factory=dict)
    checkpoint_config: Any = None
    restore_checkpoint: Optional[str] = None   # checkpoint dir to resume from (fs path)
    start_iteration: int = 0
    start_time_total: float = 0.0
    next_checkpoint_index: int = 0
    kept_checkpoints: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    failure_number: int = 0        # failures so far (numbering in error.txt)
    write_params: bool = True      # first attempt writes params.json / params.pkl
    reuse_actor: bool = False
    storage_filesystem: Any = None  # the user's pyarrow filesystem, when given
    # RunConfig(log_to_file): (stdout file, stderr file) in the trial's working dir, or None
    log_to_file: Tuple[Optional[str], Optional[str]] = (None, None)
    export_formats: List[str] = field(default_factory=list)  # tune.run(export_formats)


class EventKind(StrEnum):
    """What a ``TrialEvent`` tells: a reported result (waits for a decision), or the end of
    an attempt: the trainable returned or was stopped (``DONE``), was paused, or failed."""

    RESULT = "result"
    DONE = "done"
    PAUSED = "paused"
    ERROR = "error"


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint a trial persisted, with what retention kept.

    Retention (``CheckpointConfig.num_to_keep``) is decided once, by the trial's writer
    where the checkpoint is persisted; the controller takes ``kept`` as it is.
    """

    name: str                  # its dir name, e.g. "checkpoint_000003"
    kept: Tuple[str, ...]      # the trial's checkpoint dirs on storage now, oldest first
    next_index: int            # the index the trial's next checkpoint gets


@dataclass
class TrialEvent:
    """Something that happened to a trial (see ``EventKind``)."""

    kind: EventKind
    trial_id: str
    result: Optional[Dict[str, Any]] = None
    checkpoint: Optional[CheckpointRecord] = None
    error_text: Optional[str] = None
    error: Optional[BaseException] = None


class Executor(Protocol):
    def start(self) -> None:
        """Prepare to run trials (spawn workers...)."""

    @property
    def capacity(self) -> int:
        """How many trials may run at once."""

    def has_free_slot(self) -> bool:
        ...

    def register_trainable(self, key: str, payload: bytes) -> None:
        """Make a pickled trainable available to every worker under ``key``."""

    def start_trial(self, spec: TrialSpec) -> None:
        ...

    def decide(self, trial_id: str, decision: Decision) -> None:
        """Answer the trial's pending ``result`` event."""

    def poll(self, timeout: float) -> List[TrialEvent]:
        """Events since the last call, waiting up to ``timeout`` seconds for the first."""

    def kill_trial(self, trial_id: str) -> None:
        """Stop a trial at once, without waiting for its next report."""

    def shutdown(self) -> None:
        ...


class TrialRunCancelled(RuntimeError):
    """The trial's flow run was cancelled in Prefect (UI, CLI): the ``error`` of the ``DONE``
    event that ends the trial, which is neither retried nor a failure (the controller records
    it as cancelled)."""
