"""Executors run trials; the controller only sees the interface in ``base``."""

from tunelib.executor.base import Executor, TrialEvent, TrialSpec

__all__ = ["Executor", "TrialEvent", "TrialSpec"]
