"""The ``iteration`` task: one training iteration (or several coalesced) of a trial.

Neither executor runs it per iteration (a task run on the trial's path costs milliseconds):
the driver-side recorder (flows.recorder) creates ``iteration`` task runs directly through
the REST API, coalescing fast iterations into one task run named ``iteration 3-7``, in the
trial's flow run - the recorder's own (local executor) or the deployment run a Prefect
worker executes (Prefect-workers executor). It uses this task's ``task_key`` so that they
show up as this task in the UI.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from prefect import task


@task(name="iteration")
def iteration(step: Optional[Callable[[], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Run one step and return its result dict (``{}`` when there is nothing to run)."""
    return dict(step() or {}) if step is not None else {}


def task_run_name(first: int, last: int) -> str:
    """``iteration 3`` or ``iteration 3-7`` for a coalesced range."""
    return f"iteration {first}" if first == last else f"iteration {first}-{last}"
