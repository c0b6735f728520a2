"""Executors run trials; the controller only sees the interface in ``base``."""

from tunelib.executor.base import CheckpointRecord, EventKind, Executor, TrialEvent, TrialSpec

__all__ = ["CheckpointRecord", "EventKind", "Executor", "TrialEvent", "TrialSpec"]
