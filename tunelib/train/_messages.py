"""The messages a training worker (rank) process sends to its trial's ``WorkerGroup``.

One frozen dataclass per kind, pickled over the rank's connection: ``RankHello`` once,
``RankReport`` per ``train.report()`` (answered with the trial's ``Decision``), then one of
``RankDone`` / ``RankFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True, slots=True)
class RankHello:
    rank: int
    pid: int


@dataclass(frozen=True, slots=True)
class RankReport:
    rank: int
    index: int                 # this rank's report count: the round it belongs to
    metrics: Dict[str, Any]
    checkpoint: Any = None     # a tunelib Checkpoint, or None


@dataclass(frozen=True, slots=True)
class RankDone:
    rank: int
    reports: int


@dataclass(frozen=True, slots=True)
class RankFailed:
    rank: int
    error_text: str
    error: Optional[BaseException] = None
