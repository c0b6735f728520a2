"""The recorder's writes: each one request through Prefect's public client surface
(``PrefectClient`` methods, or its ``request`` with a typed body where a method would cost
more requests), acknowledged when its response arrives, and counted.

Requests per record (measured by bench/prefect_writes.py):

* a flow, once per flow name: ``create_flow_from_name``;
* a flow run: ``request("POST", "/flow_runs/")`` with a ``FlowRunCreate`` body, created
  directly in its first state (``create_flow_run`` would POST the flow again every time);
* a task run: ``create_task_run``; a state: ``set_flow_run_state``;
* an artifact: ``request("POST", "/artifacts/")`` with an ``ArtifactCreate`` body; its
  next content ``request("PATCH", "/artifacts/{id}")`` with an ``ArtifactUpdate`` body
  (``create_artifact`` / ``update_artifact`` also emit an event each, through a websocket
  of their own).

503 answers (SQLite's "database is locked"), which the client retries after 2, 4, 8 s, are
counted by an httpx response hook (:func:`count_503s`) that sees every response, retried
ones included.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional

from tunelib.prefect._payloads import (
    StateChange,
    StateSpec,
    artifact_create_body,
    artifact_update_body,
    flow_run_body,
    prefect_state,
)


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
    and ``by_kind`` (kind -> [count, total ms]).
    """

    def __init__(self, client: Any, stats: Dict[str, Any], max_in_flight: int = 1):
        self.client = client
        self.stats = stats
        self._sem = asyncio.Semaphore(max(1, max_in_flight))
        self._flow_ids: Dict[str, asyncio.Task] = {}
        self._active = 0
        self._busy_since: Optional[float] = None

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

    async def create_task_run(self, task: Any, flow_run_id: str, dynamic_key: str, name: str,
                              tags: List[str], state: StateSpec,
                              task_run_id: Optional[str] = None) -> str:
        """A task run of ``task`` (its task_key) in ``flow_run_id``, created in ``state``."""
        task_run = await self._timed("task_run", lambda: self.client.create_task_run(
            task, flow_run_id=uuid.UUID(flow_run_id), dynamic_key=dynamic_key,
            id=uuid.UUID(task_run_id) if task_run_id else None, name=name, extra_tags=tags,
            state=prefect_state(state), task_inputs={}))
        return str(task_run.id)

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
