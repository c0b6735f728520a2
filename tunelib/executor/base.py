"""The executor interface (modelled on Syne Tune's TrialBackend): start, decide, stop, poll.

The controller hands a ``TrialSpec`` to ``start_trial`` and reads ``TrialEvent``s from
``poll``. Every ``result`` event waits for an answer: the controller calls ``decide`` with
CONTINUE, STOP or PAUSE, and the trial's ``report()`` returns (or unwinds) accordingly.
A backend never decides anything itself; it only moves trials and their messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Tuple


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


@dataclass
class TrialEvent:
    """Something that happened to a trial: kind is result | done | error | paused."""

    kind: str
    trial_id: str
    result: Optional[Dict[str, Any]] = None
    checkpoint_name: Optional[str] = None
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

    def decide(self, trial_id: str, decision: str) -> None:
        """Answer the trial's pending ``result`` event."""

    def poll(self, timeout: float) -> List[TrialEvent]:
        """Events since the last call, waiting up to ``timeout`` seconds for the first."""

    def kill_trial(self, trial_id: str) -> None:
        """Stop a trial at once, without waiting for its next report."""

    def shutdown(self) -> None:
        ...
