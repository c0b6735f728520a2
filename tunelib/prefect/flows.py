"""tunelib's Prefect flows and task: ``experiment``, ``trial`` and ``iteration``.

Their names are what Prefect records and deployments match on; the top-level ``flows/``
and ``tasks/`` files re-export these objects as the deployment entry points
(``deployments/prefect.yaml``).

* ``trial``: one flow run per trial. On the local executor the recorder creates these runs
  through the API (no flow body runs, so the trial's hot path never waits on Prefect); on
  the Prefect-workers executor each trial is a deployment run of this flow, and a
  ``prefect worker`` runs its body (:mod:`tunelib.prefect.deployed_trial`).
* ``experiment``: one flow run per experiment, the trials' parent. The recorder creates it
  through the API; as a deployment run (``experiment/tunelib-experiment``) its body runs a
  whole experiment from a script.
* ``iteration``: the task whose ``task_key`` the recorder's coalesced iteration task runs
  (``iteration 3-7``) carry, so the UI shows them as this task.

Example (a worker machine, see deployments/README.md)::

    prefect deployment run experiment/tunelib-experiment -p script=/shared/tune_mnist.py
"""

from __future__ import annotations

from typing import Any, Dict

from prefect import flow, get_run_logger, task


@flow(name="experiment", log_prints=False)
def experiment(name: str, script: str) -> None:
    """Run the experiment script ``script`` (a path on the worker's machine) as ``__main__``;
    it calls ``Tuner.fit()`` / ``tune.run()``, which record into this run's API. ``name``
    labels the run (the script names its experiment itself)."""
    import runpy

    get_run_logger().info("experiment %s: running %s", name, script)
    runpy.run_path(script, run_name="__main__")


@flow(name="trial", retries=0, log_prints=True)
def trial(config: Dict[str, Any], tunelib: Dict[str, Any]) -> Any:
    """One attempt of a trial, as a deployment run on a Prefect worker.

    ``config`` is the trial's config as JSON, shown in the UI; the attempt's real spec (the
    config as Python objects, the checkpoint to restore) and the trainable are read from the
    experiment's storage, which ``tunelib`` locates (``PrefectWorkers`` fills it in). A raise
    fails this attempt; Prefect retries the flow run in place while the driver-set
    ``retries`` last. The trainable's prints and logging records go to the run's logs.
    """
    from tunelib.prefect.deployed_trial import run_deployed

    return run_deployed(tunelib)


@task(name="iteration")
def iteration(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """One reported result of a trial: returns ``metrics`` as it is.

    Nothing calls it on the hot path (a task run per result would cost milliseconds each):
    the recorder creates ``iteration`` task runs directly, one per batch of coalesced results,
    with this task's ``task_key``."""
    return dict(metrics)
