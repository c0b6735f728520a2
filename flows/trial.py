"""The ``trial`` flow: one flow run per trial, a child (subflow) of the experiment's run.

Retries are Ray's ``FailureConfig.max_failures``: ``trial_flow(max_failures)`` returns the
flow with ``retries`` set (``-1`` = retry forever, approximated by ``UNLIMITED_RETRIES``
since Prefect has no "forever"). The local executor runs trainables in plain worker processes
and the driver-side recorder mirrors the same story (flow run per trial, iteration task runs,
retries through Prefect's orchestration) through the REST API. The Prefect-workers executor
(tunelib.executor.prefect_workers) deploys this flow: each trial is a real deployment run on
a ``prefect worker``, whose states Prefect's engine sets there (retries in place included);
the driver's recorder only adds the iteration task runs to it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from prefect import flow

# max_failures=-1 means "retry forever" in Ray; Prefect needs a number of retries.
# A million retries is "forever" for any real experiment.
UNLIMITED_RETRIES = 1_000_000


def retries_for(max_failures: int) -> int:
    """Prefect retries for Ray's max_failures (-1 = unlimited; <0 anything else = 0)."""
    if max_failures == -1:
        return UNLIMITED_RETRIES
    return max(0, int(max_failures))


@flow(name="trial", retries=0, log_prints=False)
def trial(
    config: Dict[str, Any],
    run_trainable: Optional[Callable[[Dict[str, Any]], Any]] = None,
    tunelib: Optional[Dict[str, Any]] = None,
) -> Any:
    """Run one trial: ``run_trainable(config)`` trains in this process.

    A raise fails this attempt; Prefect retries the flow run (``retries``) and the
    trainable restores from its latest persisted checkpoint.

    As a deployment run (the Prefect-workers executor, ``tunelib`` given): the trainable and
    the attempt's spec are read from the experiment's storage, results go to storage and
    the driver's decisions come back through a control record there
    (``tunelib.executor.prefect_workers``). The flow run's retries are set per run by the
    driver to the failures the trial has left.
    """
    if tunelib is not None:
        return _run_deployed(tunelib)
    if run_trainable is None:
        return None
    return run_trainable(config)


def _run_deployed(params: Dict[str, Any]):
    from prefect import get_run_logger
    from prefect.runtime import flow_run
    from prefect.states import Completed

    from tunelib.executor.remote_trial import run_trial_attempt

    logger = get_run_logger()
    logger.info("trial %s, attempt %s", params.get("trial_id"), flow_run.run_count)
    kind, checkpoint, decision = run_trial_attempt(str(flow_run.id), params)
    if kind == "paused":
        where = checkpoint.name if checkpoint is not None else "its latest checkpoint"
        return Completed(name="Paused", message=f"paused by the scheduler at {where}")
    if decision == "STOP":
        return Completed(name="Stopped", message="stopped early by the scheduler")
    return Completed(message="trial finished")


def trial_flow(max_failures: int = 0):
    """The trial flow with Ray's max_failures as Prefect retries."""
    return trial.with_options(retries=retries_for(max_failures))
