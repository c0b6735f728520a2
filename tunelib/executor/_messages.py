"""The messages between the local executor (driver) and its worker processes.

Small frozen dataclasses, pickled over a ``multiprocessing.connection``; one class per
kind of message, so a reader dispatches on the type and a field is named, not indexed.

Worker -> driver: ``Hello`` once; per attempt any number of ``Reported`` (each answered
by a ``Decide``), ``StorageOp`` / ``FetchCheckpoint`` (storage that lives in the driver's
memory), then exactly one of ``AttemptEnded`` / ``AttemptFailed``.
Driver -> worker: ``LoadTrainable``, ``RunAttempt``, ``Decide``, ``CheckpointFiles``
(the answer to ``FetchCheckpoint``), ``Shutdown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, List, Optional, Tuple

from tunelib._lifecycle import Decision
from tunelib.executor.base import CheckpointRecord, TrialSpec

# ----------------------------------------------------------------- worker -> driver


@dataclass(frozen=True, slots=True)
class Hello:
    pid: int


@dataclass(frozen=True, slots=True)
class Reported:
    """A result on storage, waiting for the driver's decision."""

    result: Dict[str, Any]
    checkpoint: Optional[CheckpointRecord] = None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """The attempt is over without error: the trainable returned, was stopped, or paused
    (``paused``); ``checkpoint`` is one persisted at the very end (class trainables)."""

    paused: bool = False
    checkpoint: Optional[CheckpointRecord] = None


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    error_text: str
    error: Optional[BaseException] = None


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
    spec: TrialSpec


@dataclass(frozen=True, slots=True)
class Decide:
    decision: Decision


@dataclass(frozen=True, slots=True)
class CheckpointFiles:
    files: List[Tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass
