"""The ``experiment`` flow: one flow run per Tune experiment, named after it.

``Tuner.fit()`` / ``tune.run()`` run the controller inside it (passed as ``run``). With the
local executor the driver-side recorder (flows.recorder) creates this flow's run through
the REST API instead, so that the controller's loop never waits on Prefect; the flow object
here gives both paths the same flow name.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from prefect import flow


@flow(name="experiment", log_prints=False)
def experiment(
    name: str,
    parameters: Optional[Dict[str, Any]] = None,
    run: Optional[Callable[[], Any]] = None,
    script: Optional[str] = None,
) -> Any:
    """Run one experiment: ``run()`` is the controller's loop (returns the ResultGrid).

    As a deployment run (``experiment/tunelib-experiment``, see deployments/README.md):
    ``script`` is the path of a Python script (on the worker's machine) that runs the
    experiment with ``Tuner.fit()`` / ``tune.run()``; it is executed as ``__main__``.
    """
    if script is not None:
        import runpy

        runpy.run_path(script, run_name="__main__")
        return None
    return run() if run is not None else None
