"""The ``trial`` flow: one flow run per trial, a child (subflow) of the experiment's run.

Retries are Ray's ``FailureConfig.max_failures``: ``trial_flow(max_failures)`` returns the
flow with ``retries`` set (``-1`` = retry forever, approximated by ``UNLIMITED_RETRIES``
since Prefect has no "forever"). The body runs a trainable in-process; the Prefect-workers
backend uses it. The local executor runs trainables in plain worker processes and the
driver-side recorder mirrors the same story (flow run per trial, iteration task runs,
retries through Prefect's orchestration) through the REST API.
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
) -> Any:
    """Run one trial: ``run_trainable(config)`` trains in this process.

    A raise fails this attempt; Prefect retries the flow run (``retries``) and the
    trainable restores from its latest persisted checkpoint.
    """
    if run_trainable is None:
        return None
    return run_trainable(config)


def trial_flow(max_failures: int = 0):
    """The trial flow with Ray's max_failures as Prefect retries."""
    return trial.with_options(retries=retries_for(max_failures))
