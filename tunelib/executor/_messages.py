"""The messages between the local executor (driver) and its worker processes.

Small frozen dataclasses, pickled over a ``multiprocessing.connection``; one class per
kind of message, so a reader dispatches on the type and a field is named, not indexed.

Worker -> driver: ``Hello`` once; per attempt at most one ``RunContextRequest`` first
(answered by a ``RunContextAnswer``), any number of ``Reported`` (each answered by a
``Decide``), ``StorageOp`` / ``FetchCheckpoint`` (storage that lives in the driver's
memory), ``Logs``, then exactly one of ``AttemptEnded`` / ``AttemptFailed``.
Driver -> worker: ``LoadTrainable``, ``RunAttempt``, ``Decide``, ``CheckpointFiles``
(the answer to ``FetchCheckpoint``), ``RunContextAnswer``, ``Shutdown``.

The attempt's captured output (``RunAttempt.capture_logs``) rides on the messages the
worker sends anyway: the ``logs`` of ``Reported``, ``AttemptEnded`` and ``AttemptFailed``
are the lines written since the worker's previous message; a ``Logs`` message carries
lines that waited about a second with no other message to ride on. All of an attempt's
lines arrive before its ``AttemptEnded`` / ``AttemptFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, List, Optional, Tuple

from tunelib._lifecycle import Decision
from tunelib.executor.base import CheckpointRecord, TrialSpec
from tunelib.recording import LogLine, RunContext

# ----------------------------------------------------------------- worker -> driver


@dataclass(frozen=True, slots=True)
class Hello:
    pid: int


@dataclass(frozen=True, slots=True)
class Reported:
    """A result on storage, waiting for the driver's decision."""

    result: Dict[str, Any]
    checkpoint: Optional[CheckpointRecord] = None
    logs: Optional[List[LogLine]] = None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """The attempt is over without error: the trainable returned, was stopped, or paused
    (``paused``); ``checkpoint`` is one persisted at the very end (class trainables)."""

    paused: bool = False
    checkpoint: Optional[CheckpointRecord] = None
    logs: Optional[List[LogLine]] = None


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    error_text: str
    error: Optional[BaseException] = None
    logs: Optional[List[LogLine]] = None


@dataclass(frozen=True, slots=True)
class Logs:
    """Captured lines that waited with no other message to ride on."""

    lines: List[LogLine]


@dataclass(frozen=True, slots=True)
class RunContextRequest:
    """Which Prefect run the trial is recorded as (asked when the trainable uses Prefect)."""

    trial_id: str


class StorageOpKind(StrEnum):
    APPEND_TEXT = "append_text"
    WRITE_BYTES = "write_bytes"
    DELETE_DIR = "delete_dir"
    UPLOAD_FILES = "upload_files"


@dataclass(frozen=True, slots=True)
class StorageOp:
    """One write to storage only the driver's process can reach (``memory://``)."""

    op: StorageOpKind
    trial_dirname: str
    rel: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class FetchCheckpoint:
    path: str


# ----------------------------------------------------------------- driver -> worker


@dataclass(frozen=True, slots=True)
class LoadTrainable:
    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """Run an attempt; ``capture_logs``: send its output to the driver (there is a
    recorder); ``prefect_api_url``: the experiment's Prefect API, when known, exported as
    ``PREFECT_API_URL`` for the attempt (and the processes it starts)."""

    spec: TrialSpec
    capture_logs: bool = False
    prefect_api_url: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Decide:
    decision: Decision


@dataclass(frozen=True, slots=True)
class CheckpointFiles:
    files: List[Tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class RunContextAnswer:
    """The trial's Prefect run, or None: there is none (nothing is recorded, or it was not
    created in time)."""

    context: Optional[RunContext]


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass
