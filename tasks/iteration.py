"""The ``iteration`` task: one training iteration (or several coalesced) of a trial.

Executed with Prefect's engine by the Prefect-workers backend (a class Trainable's
``step()`` or the span between two ``report()`` calls). The local executor does not run it:
its driver-side recorder (flows.recorder) creates ``iteration`` task runs directly through
the REST API, coalescing fast iterations into one task run named ``iteration 3-7``; it uses
this task's ``task_key`` so both paths show up as the same task in the UI.
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
