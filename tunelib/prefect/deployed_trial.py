"""What the ``trial`` flow runs on a ``prefect worker`` (the Prefect-workers executor).

The attempt itself (spec, trainable, results, decisions, heartbeat) goes through storage
(:mod:`tunelib.executor.remote_trial`); this module is its Prefect side: the run's id and
attempt number from Prefect's runtime, a log line on the run, and the final state that
tells the UI how the attempt ended.

A scheduler-stopped trial ends ``Completed`` named ``Stopped``, as the recorder records it
on the local executor (see :mod:`tunelib.prefect.recorder` for why not ``Cancelled``).
"""

from __future__ import annotations

from typing import Any, Dict

from prefect import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from tunelib._lifecycle import Decision
from tunelib.executor.base import EventKind
from tunelib.executor.remote_trial import run_trial_attempt
from tunelib.prefect._payloads import STOPPED_MESSAGE, STOPPED_STATE_NAME


def run_deployed(params: Dict[str, Any]) -> State:
    """Run the attempt the driver prepared for this flow run; its final state."""
    logger = get_run_logger()
    logger.info("trial %s, attempt %s", params.get("trial_id"), flow_run.run_count)
    kind, checkpoint, decision = run_trial_attempt(str(flow_run.id), params)
    if kind == EventKind.PAUSED:
        where = checkpoint.name if checkpoint is not None else "its latest checkpoint"
        return Completed(name="Paused", message=f"paused by the scheduler at {where}")
    if decision == Decision.STOP:
        return Completed(name=STOPPED_STATE_NAME, message=STOPPED_MESSAGE)
    return Completed(message="trial finished")
