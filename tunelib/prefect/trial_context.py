"""Prefect inside a trainable: the trial's flow run as the current flow run of a worker.

On the local executor a trial's flow run is created by the recorder through the API; no
flow body runs in the worker process. A trainable that calls a user's ``@task`` (or
``@flow``) would then run it outside any flow run, and, with no ``PREFECT_API_URL``, start
a second embedded server on the experiment's database (lock errors, seconds lost, task
runs with no flow run). The worker enters ``trial_run_context`` around an attempt of a
trainable that imported Prefect: with the experiment's API as ``PREFECT_API_URL`` and the
trial's run as ``FlowRunContext``, Prefect's engine makes a ``@task`` called inside a task
run of the trial's flow run, a ``@flow`` a subflow of it, and ``get_run_logger()`` a
logger of that run.

The context mirrors what ``FlowRunEngine.setup_run_context`` (prefect/flow_engine.py)
enters, minimally: the flow (``tunelib.prefect.flows.trial``), the flow run read back from
the API, a sync client, a result store and a duplicate of the flow's task runner. It sets
no state: the recorder owns the trial run's states.

Imported by ``tunelib.executor.worker`` only when the trainable has imported Prefect
already, so that a worker of a trainable without Prefect never pays for importing it.

Example::

    with trial_run_context("http://127.0.0.1:4200/api", flow_run_id):
        my_task(1)        # a task run of the trial's flow run
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.results import get_result_store
from prefect.settings import PREFECT_API_URL, temporary_settings

from tunelib.prefect.flows import trial


@contextlib.contextmanager
def trial_run_context(api_url: str, flow_run_id: str) -> Iterator[None]:
    """Run the body as part of flow run ``flow_run_id`` on the API at ``api_url``."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        client = stack.enter_context(get_client(sync_client=True))
        flow_run = client.read_flow_run(flow_run_id)
        task_runner = stack.enter_context(trial.task_runner.duplicate())
        stack.enter_context(FlowRunContext(
            flow=trial,
            flow_run=flow_run,
            log_prints=False,
            parameters=flow_run.parameters,
            client=client,
            result_store=get_result_store().update_for_flow(trial, _sync=True),
            task_runner=task_runner,
        ))
        yield
