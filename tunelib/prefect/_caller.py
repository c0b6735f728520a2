"""The caller's Prefect run: ``fit()`` called inside a running flow (or task) records the
experiment as a subflow of that run, through the caller's own API.

Reads Prefect's run context only when Prefect is imported already: code running inside a
flow has imported it, so a script that never touched Prefect pays nothing here.

Example::

    caller = caller_run()        # None outside any flow or task
    if caller is not None:
        print(caller.api_url, caller.flow_run_id, caller.task_run_id)
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Optional


class CallerRun(NamedTuple):
    """The run ``fit()`` was called from.

    ``api_url``: the API the caller's client talks to (its temporary server, or
    ``PREFECT_API_URL``'s); ``flow_run_id``: the caller's flow run (the experiment's parent);
    ``task_run_id``: the task run ``fit()`` was called in, when it was called inside a task
    (the experiment's stand-in task run then names it as its parent, as Prefect's engine does
    for a flow called inside a task); ``flow_run_name``: for messages.
    """

    api_url: str
    flow_run_id: str
    task_run_id: Optional[str] = None
    flow_run_name: Optional[str] = None


def caller_run() -> Optional[CallerRun]:
    """The flow or task run this thread runs in, or None (also when Prefect is not loaded)."""
    if "prefect.context" not in sys.modules:
        return None
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    task_run_id = None
    flow_run_id = None
    flow_run_name = None
    client = None
    if task_ctx is not None:
        task_run_id = str(task_ctx.task_run.id)
        if task_ctx.task_run.flow_run_id is not None:
            flow_run_id = str(task_ctx.task_run.flow_run_id)
        client = task_ctx.client
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        if flow_run_id is None or flow_run_id == str(flow_ctx.flow_run.id):
            flow_run_id = str(flow_ctx.flow_run.id)
            flow_run_name = flow_ctx.flow_run.name
        client = client or flow_ctx.client
    if flow_run_id is None:
        return None  # a task run outside any flow: nothing to nest under
    api_url = _api_url(client)
    if api_url is None:
        return None
    return CallerRun(api_url, flow_run_id, task_run_id, flow_run_name)


def _api_url(client) -> Optional[str]:
    url = getattr(client, "api_url", None) if client is not None else None
    if url:
        return str(url).rstrip("/")
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None
