"""The life-cycle vocabularies of an experiment, each defined once.

Every one is a ``StrEnum``: a member *is* its string value, so Ray's spellings stay valid
(``TrialScheduler.STOP == "STOP"``, ``trial.status == "TERMINATED"``), members serialise
to JSON as the plain string, and a typo is an ``AttributeError`` instead of a silent
mismatch.

Example::

    from tunelib._lifecycle import Decision, TrialStatus

    assert Decision("STOP") is Decision.STOP
    assert TrialStatus.ERROR == "ERROR"
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Decision", "TrialStatus", "TrialOutcome", "StoppedBy", "ExperimentOutcome"]


class Decision(StrEnum):
    """What a trial does after a reported result (the answer to ``report()``).

    ``NOOP`` is a scheduler's "I already acted through the controller"; the trial goes on.
    """

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"


class TrialStatus(StrEnum):
    """Ray's trial statuses: PENDING -> RUNNING -> (PAUSED) -> TERMINATED | ERROR."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    @property
    def is_finished(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


class TrialOutcome(StrEnum):
    """How a trial ended, as recorded in Prefect.

    Ray calls both of the first two TERMINATED; the record tells them apart:
    ``TERMINATED`` the trainable returned (its work is done); ``STOPPED`` a scheduler, a
    stopper or the end of the experiment stopped it early (its results are valid, the
    message names who stopped it); ``ERROR`` it failed for good.
    """

    TERMINATED = "TERMINATED"
    STOPPED = "STOPPED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"   # its Prefect run was cancelled (UI, CLI); Ray: TERMINATED
    INTERRUPTED = "INTERRUPTED"   # the experiment was interrupted; resumable, Ray: RUNNING


class StoppedBy(StrEnum):
    """Who ended a trial early (kept on the trial, named in its record)."""

    SCHEDULER = "the scheduler"
    STOPPER = "the stopper"
    EXPERIMENT = "the end of the experiment"
    CANCEL = "a cancel of its Prefect flow run"


class ExperimentOutcome(StrEnum):
    """How an experiment ended, as recorded in Prefect."""

    COMPLETED = "COMPLETED"   # every trial ended, none in ERROR
    FAILED = "FAILED"         # a trial failed for good, or the experiment raised
    CANCELLED = "CANCELLED"   # interrupted (Ctrl-C, SIGTERM, Prefect's Cancel): resumable
