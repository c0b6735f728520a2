"""The recorder's writes: each one request through Prefect's public client surface
(``PrefectClient`` methods, or its ``request`` with a typed body where a method would cost
more requests), acknowledged when its response arrives, and counted.

Requests per record (measured by bench/prefect_writes.py):

* a flow, once per flow name: ``create_flow_from_name``;
* a flow run: ``request("POST", "/flow_runs/")`` with a ``FlowRunCreate`` body, created
  directly in its first state (``create_flow_run`` would POST the flow again every time);
* an iteration task run: two events (``prefect.task-run.Running`` and ``.Completed``) on
  the writer's events websocket (:mod:`~tunelib.prefect._events`), which the server's
  task-run recorder turns into the task run with its true start and end time; counted as
  one ``task_run_event`` write, not acknowledged one by one (``unrecorded_task_runs``
  reads them back at the end). Without a usable websocket: ``create_task_run``;
* any other task run (the subflow stand-ins, whose id must exist before the child flow
  run): ``create_task_run``; a state: ``set_flow_run_state``;
* a batch of log lines (at most 1,000, one flow run): ``create_logs``;
* trials complete when first written (started and ended between two flushes), on
  tunelib's embedded server only: ``POST /tunelib/trials``, many per request
  (:mod:`~tunelib.prefect._bulk_app`; ``bulk`` says whether the server has the route);
* an artifact: ``request("POST", "/artifacts/")`` with an ``ArtifactCreate`` body; its
  next content ``request("PATCH", "/artifacts/{id}")`` with an ``ArtifactUpdate`` body
  (``create_artifact`` / ``update_artifact`` also emit an event each, through a websocket
  of their own).

503 answers (SQLite's "database is locked"), which the client retries after 2, 4, 8 s, are
counted by an httpx response hook (:func:`count_503s`) that sees every response, retried
ones included. ``last_ack`` (``time.monotonic()`` of the last acknowledged write) tells
``PrefectRecorder.close`` whether the server still answers; :func:`is_connection_error`
tells a server that is gone from a write the server refused.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional

from tunelib.prefect._events import TaskRunEvents, unrecorded_task_runs
from tunelib.prefect._payloads import (
    StateChange,
    StateKind,
    StateSpec,
    artifact_create_body,
    artifact_update_body,
    flow_run_body,
    prefect_state,
)


def is_connection_error(exc: BaseException) -> bool:
    """``exc`` says the server cannot be reached (refused, reset, timed out): the client
    retries those itself once it had connected, so one that reaches us means it is gone."""
    import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError, OSError))


def count_503s(stats: Dict[str, Any]) -> Callable[[Any], Awaitable[None]]:
    """An httpx (async) response hook adding each 503 to ``stats["retries_503"]``; pass it as
    ``PrefectClient(httpx_settings={"event_hooks": {"response": [hook]}})``."""

    async def hook(response: Any) -> None:
        if response.status_code == 503:
            stats["retries_503"] += 1

    return hook


class PrefectWrites:
    """Writes through ``client`` (a ``PrefectClient``), at most ``max_in_flight`` at once.

    ``stats`` gets ``writes``, ``seconds_busy`` (time with at least one request in flight)
    and ``by_kind`` (kind -> [count, total ms]). ``api_url``: where iteration task runs
    are sent as events (None: always through REST).
    """

    def __init__(self, client: Any, stats: Dict[str, Any], max_in_flight: int = 1,
                 api_url: Optional[str] = None):
        self.client = client
        self._events = TaskRunEvents(api_url) if api_url else None
        self.stats = stats
        self._sem = asyncio.Semaphore(max(1, max_in_flight))
        self._flow_ids: Dict[str, asyncio.Task] = {}
        self._active = 0
        self._busy_since: Optional[float] = None
        self.last_ack = time.monotonic()
        self.bulk = False   # the server takes whole trials (probe_bulk)

    async def _timed(self, kind: str, call: Callable[[], Awaitable[Any]]) -> Any:
        async with self._sem:
            t0 = time.perf_counter()
            if self._active == 0:
                self._busy_since = t0
            self._active += 1
            try:
                result = await call()
            finally:
                self._active -= 1
                t1 = time.perf_counter()
                if self._active == 0 and self._busy_since is not None:
                    self.stats["seconds_busy"] += t1 - self._busy_since
                    self._busy_since = None
                count = self.stats["by_kind"].setdefault(kind, [0, 0.0])
                count[0] += 1
                count[1] += (t1 - t0) * 1000
            self.stats["writes"] += 1  # acknowledged
            self.last_ack = time.monotonic()
            return result

    async def flow_id(self, flow_name: str) -> Any:
        """The flow's id (created once per recorder and flow name)."""
        task = self._flow_ids.get(flow_name)
        if task is None:
            task = self._flow_ids[flow_name] = asyncio.ensure_future(self._timed(
                "flow", lambda: self.client.create_flow_from_name(flow_name)))
        return await task

    async def create_flow_run(self, flow_name: str, name: str, parameters: dict,
                              tags: List[str], state: StateSpec, idempotency_key: str,
                              parent_task_run_id: Optional[str] = None,
                              retries: Optional[int] = None) -> str:
        """A flow run of ``flow_name`` created in ``state``; its id."""
        flow_id = await self.flow_id(flow_name)
        body = flow_run_body(flow_id, name, parameters, tags, state, idempotency_key,
                             parent_task_run_id=parent_task_run_id, retries=retries)
        response = await self._timed("flow_run", lambda: self.client.request(
            "POST", "/flow_runs/", json=body))
        return response.json()["id"]

    async def probe_bulk(self) -> bool:
        """Whether the server takes whole trials in one request (tunelib's embedded server
        does; any other answers 404); sets and returns ``bulk``. ``TUNELIB_PREFECT_BULK=0``
        keeps every write on Prefect's REST API."""
        from tunelib.prefect._bulk_app import HEALTH_ROUTE, VERSION

        if os.environ.get("TUNELIB_PREFECT_BULK", "1") == "0":
            return False
        try:
            response = await self.client.request("GET", HEALTH_ROUTE)
            self.bulk = response.status_code == 200 and response.json().get("version") == VERSION
        except Exception:
            self.bulk = False
        return self.bulk

    async def create_trials(self, records: List[Dict[str, Any]]) -> None:
        """Whole trials (``_bulk_app``'s records), one request."""
        from tunelib.prefect._bulk_app import ROUTE

        await self._timed("bulk_trials", lambda: self.client.request(
            "POST", ROUTE, json={"trials": records}))

    async def create_task_run(self, task: Any, flow_run_id: str, dynamic_key: str, name: str,
                              tags: List[str], state: StateSpec,
                              task_run_id: Optional[str] = None,
                              task_inputs: Optional[Dict[str, list]] = None) -> str:
        """A task run of ``task`` (its task_key) in ``flow_run_id``, created in ``state``."""
        task_run = await self._timed("task_run", lambda: self.client.create_task_run(
            task, flow_run_id=uuid.UUID(flow_run_id), dynamic_key=dynamic_key,
            id=uuid.UUID(task_run_id) if task_run_id else None, name=name, extra_tags=tags,
            state=prefect_state(state), task_inputs=task_inputs or {}))
        return str(task_run.id)

    async def emit_task_run(self, task: Any, flow_run_id: str, task_run_id: str, name: str,
                            dynamic_key: str, tags: List[str], start_t: float, end_t: float,
                            message: str) -> str:
        """A Completed task run of ``task`` in ``flow_run_id`` that ran from ``start_t`` to
        ``end_t`` (epoch seconds), sent as events; created through REST (in Completed, the
        server's time) when the events websocket cannot be used. Its id."""
        events = self._events
        if events is not None and await events.ready():
            sent = await self._timed("task_run_event", lambda: events.emit(
                task, flow_run_id, task_run_id, name, dynamic_key, tags, start_t, end_t,
                message))
            if sent:
                return task_run_id
        return await self.create_task_run(
            task, flow_run_id, dynamic_key, name, tags,
            StateSpec(StateKind.COMPLETED, None, message), task_run_id=task_run_id)

    async def close_events(self) -> None:
        """Close the events websocket (flushing what was sent)."""
        if self._events is not None:
            await self._events.close()

    async def unrecorded_event_task_runs(self, within_s: float) -> List[str]:
        """Ids of the task runs sent as events that the server has not recorded (as
        Completed) within ``within_s`` s; call after :meth:`close_events`."""
        if self._events is None or not self._events.sent:
            return []
        return await unrecorded_task_runs(self.client, self._events.sent, within_s)

    async def create_logs(self, bodies: List[Dict[str, Any]]) -> None:
        """One batch of log lines (``_logs.log_bodies``), one request."""
        await self._timed("logs", lambda: self.client.create_logs(bodies))

    async def set_state(self, flow_run_id: str, change: StateChange, note: str = "") -> None:
        """Set ``change``'s state (``note`` appended to its message); raises when the server
        does not take it. Rules that disagree with the controller are overruled (forced)."""
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.responses import SetStateStatus

        spec = change.state.with_note(note)
        result = await self._set(flow_run_id, spec, change.force)
        if result.status == SetStateStatus.ACCEPT:
            return
        if (change.expect_retry and result.status == SetStateStatus.REJECT
                and result.state is not None and result.state.type == StateType.SCHEDULED):
            return  # Failed -> AwaitingRetry, as intended
        if not change.force:  # the server's rules disagreed with the controller, which is right
            result = await self._set(flow_run_id, spec, True)
            if result.status == SetStateStatus.ACCEPT:
                return
        raise RuntimeError(f"server answered {result.status.value}: {result.details}")

    async def _set(self, flow_run_id: str, spec: StateSpec, force: bool) -> Any:
        return await self._timed("set_state", lambda: self.client.set_flow_run_state(
            flow_run_id, prefect_state(spec), force=force))

    async def create_artifact(self, key: str, kind: str, description: str, data: Any,
                              flow_run_id: str) -> str:
        """An artifact on the flow run ``flow_run_id`` (a new version when ``key`` has
        one already); its id."""
        body = artifact_create_body(key, kind, description, data, uuid.UUID(flow_run_id))
        response = await self._timed("artifact", lambda: self.client.request(
            "POST", "/artifacts/", json=body))
        return response.json()["id"]

    async def update_artifact(self, artifact_id: str, description: str, data: Any) -> None:
        """New data and description for the artifact ``artifact_id`` (no new version)."""
        body = artifact_update_body(description, data)
        await self._timed("artifact_update", lambda: self.client.request(
            "PATCH", "/artifacts/{id}", path_params={"id": artifact_id}, json=body))
