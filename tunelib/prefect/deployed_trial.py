"""What the ``trial`` flow runs on a ``prefect worker`` (the Prefect-workers executor).

The attempt itself (spec, trainable, results, decisions, heartbeat) goes through storage
(:mod:`tunelib.executor.remote_trial`); this module is its Prefect side: the run's id and
attempt number from Prefect's runtime, the trainable's output on the run, a cancel that
ends the attempt, and the final state that tells the UI how the attempt ended.

* Logs: the ``trial`` flow logs prints (``log_prints=True``); the trainable's ``logging``
  records reach the run through Prefect's API handler on the root logger for the attempt;
  a failed attempt's traceback is logged on the run (a WARNING when Prefect retries it, an
  ERROR when it was the last). A ``@task`` the trainable calls runs in this flow run.
* Cancel: the worker SIGTERMs the process of a cancelled run. Prefect's handler raises in
  whatever code runs, and the trainable's runner would take that for the trial's failure
  (an error file, a retry): for the attempt, SIGTERM is a ``KeyboardInterrupt`` instead
  (the runner's "not the trial's failure"), handed on to Prefect's handler once the
  trainable has unwound, so that Prefect's engine ends the run Cancelled.
* Final state: a scheduler-stopped trial ends ``Completed`` named ``Stopped``, as the
  recorder records it on the local executor (see :mod:`tunelib.prefect.recorder` for why
  not ``Cancelled``). After an in-place retry the flow returns plain data instead of a
  named state: Prefect 3.8's engine keeps the failed attempt's exception and re-raises it
  when a retried flow returns a State (``FlowRunEngine.result``), which logs "Engine
  execution exited with unexpected exception" on a run that ended Completed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Dict, Iterator

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run
from prefect.states import Completed

from tunelib._lifecycle import Decision
from tunelib.executor._storage_channel import TrialAttemptFailed
from tunelib.executor.base import EventKind
from tunelib.executor.remote_trial import run_trial_attempt
from tunelib.prefect._payloads import STOPPED_MESSAGE, STOPPED_STATE_NAME


def run_deployed(params: Dict[str, Any]) -> Any:
    """Run the attempt the driver prepared for this flow run; its final state."""
    logger = get_run_logger()
    attempt = flow_run.run_count
    logger.info("trial %s, attempt %s", params.get("trial_id"), attempt)
    try:
        with _sigterm_as_interrupt(), _logs_to_run(str(flow_run.id)):
            kind, checkpoint, decision = run_trial_attempt(str(flow_run.id), params)
    except TrialAttemptFailed as exc:
        _log_failure(logger, attempt, str(exc))
        raise
    if kind == EventKind.PAUSED:
        where = checkpoint.name if checkpoint is not None else "its latest checkpoint"
        state = Completed(name="Paused", message=f"paused by the scheduler at {where}")
    elif decision == Decision.STOP:
        state = Completed(name=STOPPED_STATE_NAME, message=STOPPED_MESSAGE)
    else:
        state = Completed(message="trial finished")
    if attempt > 1:  # see the module docstring: Prefect would re-raise the earlier failure
        logger.info("%s: %s", state.name, state.message)
        return {"state": state.name, "message": state.message}
    return state


def _log_failure(logger: logging.Logger, attempt: int, traceback_text: str) -> None:
    """The trainable's traceback on the run: a warning while Prefect retries the run."""
    context = FlowRunContext.get()
    retries = context.flow_run.empirical_policy.retries if context is not None else 0
    if attempt <= (retries or 0):
        logger.warning("attempt %s failed; Prefect retries the trial:\n%s", attempt,
                       traceback_text.rstrip())
    else:
        logger.error("attempt %s failed:\n%s", attempt, traceback_text.rstrip())


class _ToThisRun(logging.Filter):
    """Sends the trainable's records (any thread) to the trial's run; Prefect's own
    loggers are shipped by Prefect's handlers already."""

    def __init__(self, flow_run_id: str):
        super().__init__()
        self._flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "prefect" or record.name.startswith("prefect."):
            return False
        if not getattr(record, "flow_run_id", None):
            record.flow_run_id = self._flow_run_id
        return True


@contextlib.contextmanager
def _logs_to_run(flow_run_id: str) -> Iterator[None]:
    """The root logger's records go to the run's logs while the attempt runs."""
    handler = APILogHandler()
    handler.addFilter(_ToThisRun(flow_run_id))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancel) unwinds the trainable as a KeyboardInterrupt, then reaches the
    handler it replaced (Prefect's: the engine ends the run Cancelled)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread's handlers
        return
    previous = signal.getsignal(signal.SIGTERM)
    received = []

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt("SIGTERM: the trial's flow run was cancelled")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if received and callable(previous):
            signal.signal(signal.SIGTERM, previous)
            previous(signal.SIGTERM, None)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
