"""The recorder's view of one trial's flow run: its phase, and the state write each engine
event asks for.

Pure bookkeeping (no Prefect, no I/O): each transition updates the trial and returns the
:class:`~tunelib.prefect._payloads.StateChange` to write, or None when nothing is written.
``run_count`` mirrors the server's (it counts entries into Running) so that the recorder
knows whether the server's retry rule will still turn a Failed into AwaitingRetry.

A trial *attached* to a flow run another engine runs (the Prefect-workers executor's
deployment runs, see ``Recorder.trial_attached``) never asks for a state write: Prefect's
engine on the worker owns that run's states; only iteration task runs are added to it.

Example::

    >>> tr = TrialRun("t1", "train_t1")
    >>> tr.start(0, {"lr": 0.1}, max_failures=1).create
    True
    >>> tr.fail("ValueError", will_retry=True).expect_retry, tr.phase
    (True, <Phase.AWAITING_RETRY: 'awaiting_retry'>)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, List, Optional, Tuple

from tunelib._lifecycle import TrialOutcome
from tunelib.prefect._logs import LogBuffer
from tunelib.prefect._payloads import (
    CANCELLED_MESSAGE,
    INTERRUPTED_MESSAGE,
    STOPPED_MESSAGE,
    STOPPED_STATE_NAME,
    StateChange,
    StateKind,
    StateSpec,
    jsonable,
    retries_for,
)

_MAX_ERROR_CHARS = 2000


class Phase(StrEnum):
    """Where a trial's flow run is, as the recorder last asked for it."""

    NEW = "new"                                  # no start seen yet
    RUNNING = "running"
    AWAITING_RETRY = "awaiting_retry"            # failed, a retry will start it again
    PAUSED = "paused"                            # the next start resumes it
    FAILED_PENDING_FINISH = "failed_pending_finish"  # failed for good, trial_finished to come
    FINAL = "final"


@dataclass(frozen=True)
class Batch:
    """Consecutive results of one trial, recorded as ONE iteration task run."""

    results: List[Tuple[float, dict]]   # (event time, result)
    first: Any                          # training_iteration range covered
    last: Any
    seq: int                            # per trial, makes the task run's dynamic key unique

    @property
    def describe(self) -> str:
        return f"{len(self.results)} results (iterations {self.first}-{self.last})"


class TrialRun:
    """One trial's flow run as the recorder sees it (see the module docstring)."""

    def __init__(self, trial_id: str, name: str):
        self.trial_id = trial_id
        self.name = name
        self.config: Dict[str, Any] = {}
        self.retries = 0
        self.flow_run_id: Optional[str] = None
        self.parent_task_run_id: Optional[str] = None
        self.phase = Phase.NEW
        self.started = False          # its flow run was created (or is being created)
        self.attached = False         # its flow run belongs to another engine
        self.run_count = 0            # entries into Running (mirror of the server's)
        self.resumes = 0
        self.final_status: Optional[TrialOutcome] = None
        self.buffer: List[Tuple[float, dict]] = []
        self.batches = 0
        self.iterations_recorded = 0
        self.logs = LogBuffer()       # its output lines not sent yet
        # written whole (``_record``'s bulk path): the start not written yet (its time and
        # state change), then its end; ``written`` the write later writes wait for
        self.deferred: Optional[Tuple[float, StateChange]] = None
        self.deferred_start: Optional[Tuple[float, StateChange]] = None
        self.ended: Optional[Tuple[float, StateChange]] = None
        self.written: Any = None

    # ------------------------------------------------------------------ transitions
    def attach(self, flow_run_id: str) -> None:
        """Its current flow run is ``flow_run_id``, run by another engine."""
        self.attached, self.flow_run_id = True, flow_run_id

    def start(self, attempt: int, config: dict, max_failures: int) -> Optional[StateChange]:
        """An attempt starts: the first creates the flow run, a later one re-enters Running
        (named Resumed after a pause, Retrying after a failure)."""
        if self.attached:
            self.started, self.phase = True, Phase.RUNNING
            return None
        if not self.started:
            self.started, self.phase, self.run_count = True, Phase.RUNNING, 1
            self.config = jsonable(config or {})
            self.retries = retries_for(max_failures)
            message = f"attempt {attempt + 1}" if attempt else "started"
            return StateChange(StateSpec(StateKind.RUNNING, None, message), "trial flow run",
                               create=True)
        self.run_count += 1
        if self.phase is Phase.PAUSED:
            self.phase = Phase.RUNNING
            self.resumes += 1
            return StateChange(StateSpec(StateKind.RUNNING, "Resumed",
                                         f"resumed (attempt {attempt})"),
                               "Running (resumed) state")
        # a retry (after AwaitingRetry, or after a Failed the server let through)
        self.phase = Phase.RUNNING
        return StateChange(StateSpec(StateKind.RUNNING, "Retrying", f"attempt {attempt + 1}"),
                           "Running (retrying) state")

    def fail(self, error: str, will_retry: bool) -> Optional[StateChange]:
        """An attempt failed; ``will_retry``: the controller starts it again."""
        if self.attached:
            return None
        message = (error or "failed").strip()
        if len(message) > _MAX_ERROR_CHARS:
            message = "…" + message[-(_MAX_ERROR_CHARS - 1):]
        if not will_retry:
            self.phase = Phase.FAILED_PENDING_FINISH
            # forced: the controller decided there is no retry, whatever run_count says
            return StateChange(StateSpec(StateKind.FAILED, None, message), "Failed state",
                               force=True)
        self.phase = Phase.AWAITING_RETRY
        if self.run_count <= self.retries:
            # the server's RetryFailedFlows rule turns this into AwaitingRetry
            return StateChange(StateSpec(StateKind.FAILED, None, message),
                               "Failed->AwaitingRetry state", expect_retry=True)
        # run_count inflated by resumes: the server would not retry, ask for it directly
        return StateChange(StateSpec(StateKind.AWAITING_RETRY, "AwaitingRetry", message),
                           "Failed->AwaitingRetry state", force=True, expect_retry=True)

    def pause(self) -> Optional[StateChange]:
        if self.attached:
            return None
        self.phase = Phase.PAUSED
        return StateChange(StateSpec(StateKind.PAUSED, "Paused", "paused by the scheduler"),
                           "Paused state")

    def finish(self, outcome: TrialOutcome, message: str = "") -> Optional[StateChange]:
        """The trial ended (for good, or until the experiment resumes): Completed, Completed
        named Stopped, Failed, or Cancelled (cancelled from Prefect, or interrupted)."""
        already_failed = self.phase is Phase.FAILED_PENDING_FINISH
        self.phase, self.final_status = Phase.FINAL, outcome
        if self.attached:
            return None
        if outcome is TrialOutcome.ERROR:
            if already_failed:
                return None  # fail(will_retry=False) recorded Failed already
            spec = StateSpec(StateKind.FAILED, None, message or "trial errored")
        elif outcome is TrialOutcome.STOPPED:
            spec = StateSpec(StateKind.COMPLETED, STOPPED_STATE_NAME, message or STOPPED_MESSAGE)
        elif outcome is TrialOutcome.CANCELLED:
            spec = StateSpec(StateKind.CANCELLED, None, message or CANCELLED_MESSAGE)
        elif outcome is TrialOutcome.INTERRUPTED:
            spec = StateSpec(StateKind.CANCELLED, None, _interrupted(message))
        else:
            spec = StateSpec(StateKind.COMPLETED, None, message or None)
        return StateChange(spec, f"final state ({spec.describe()})", force=True)

    @property
    def live(self) -> bool:
        """Its own flow run exists (or is being created) and has not ended: a run to watch
        for a Cancel from Prefect."""
        return self.started and not self.attached and self.phase is not Phase.FINAL

    # ------------------------------------------------------------------ coalescing
    def add_result(self, t: float, result: dict) -> None:
        self.buffer.append((t, result))

    def oldest_result_at(self) -> Optional[float]:
        return self.buffer[0][0] if self.buffer else None

    def take_batch(self) -> Optional[Batch]:
        """The buffered results as one batch (None when there are none)."""
        if not self.buffer:
            return None
        results, self.buffer = self.buffer, []
        self.batches += 1
        its = [r.get("training_iteration") for _, r in results]
        first = its[0] if its[0] is not None else self.iterations_recorded + 1
        last = its[-1] if its[-1] is not None else first + len(results) - 1
        return Batch(results, first, last, self.batches)

    def recorded(self, batch: Batch) -> None:
        self.iterations_recorded += len(batch.results)

    def buffered_description(self) -> Optional[str]:
        if not self.buffer:
            return None
        its = [r.get("training_iteration") for _, r in self.buffer]
        return f"{len(its)} buffered results (iterations {its[0]}-{its[-1]})"


def _interrupted(message: str) -> str:
    """``interrupted (<why>); resumes ...``: the engine's message, and that it resumes."""
    message = (message or "").strip()
    if not message or "resume" in message:
        return message or INTERRUPTED_MESSAGE
    return f"interrupted ({message}); resumes when the experiment is resumed"
