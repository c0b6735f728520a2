"""Iteration task runs sent as Prefect events, so that they carry their TRUE times.

Prefect's REST API stamps every state with the server's clock; its events carry the time
they happened (``occurred``). Prefect's own task engine records task runs that way: it
emits ``prefect.task-run.<State>`` events and the server's ``task_run_recorder`` service
creates or updates the task run from them (start and end time, state, state timestamps =
the events' times). :class:`TaskRunEvents` does the same for one coalesced batch of a
trial's results: a ``Running`` event at its first result's time and a ``Completed`` event
at its last's, the trial's flow run as the related ``flow-run`` resource and the task run
as :func:`prefect.utilities.engine.emit_task_run_state_change_event` dumps it.

Events are fire-and-forget (the websocket has no per-event answer) and the server ingests
them asynchronously, so what was sent is read back once at the end
(:func:`unrecorded_task_runs`: ids in chunks of at most 200, retried for a few seconds).

One websocket per writer, opened on the first emit in the writer's event loop. When it
cannot be opened (events disabled, a proxy without websockets, an auth problem) or breaks,
``unavailable`` says why and the caller creates the task runs through REST instead.

Example (inside the writer's event loop)::

    events = TaskRunEvents(api_url)
    sent = await events.emit(iteration, flow_run_id, str(uuid.uuid4()), "iteration 1-3",
                             "1-3-1", ["exp"], t_first, t_last, "3 results ...")
    await events.close()
    missing = await unrecorded_task_runs(client, events.sent, within_s=5.0)
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
import uuid
from typing import Any, List, Optional

log = logging.getLogger("tunelib.recorder")

# a server without a usable events websocket is given up on after this long (then REST)
OPEN_TIMEOUT_S = 5.0
RECONNECTION_ATTEMPTS = 2
CLOSE_TIMEOUT_S = 2.0
# the server's default page size (PREFECT_API_DEFAULT_LIMIT) bounds one read
READ_CHUNK = 200
# a Running event at the same instant as its Completed one would tie on the server's
# "newer state wins" upsert; it goes this much earlier
_TIE_BREAK = _dt.timedelta(microseconds=1)


def _utc(t: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc)


def task_run_events(task: Any, flow_run_id: str, task_run_id: str, name: str,
                    dynamic_key: str, tags: List[str], start_t: float, end_t: float,
                    message: str) -> List[Any]:
    """The two ``prefect.events.Event`` of one completed task run of ``task``: Running at
    ``start_t``, Completed (with ``message``) at ``end_t`` (epoch seconds), as Prefect's
    task engine emits them."""
    from prefect.client.schemas.objects import StateType, TaskRun
    from prefect.events import Event

    start, end = _utc(start_t), _utc(max(start_t, end_t))
    running_at = min(start, end - _TIE_BREAK)
    events = []
    for state_type, state_name, occurred, prior, state_message in (
            (StateType.RUNNING, "Running", running_at, None, None),
            (StateType.COMPLETED, "Completed", end, StateType.RUNNING, message)):
        done = state_type is StateType.COMPLETED
        task_run = TaskRun(
            id=uuid.UUID(task_run_id), name=name, task_key=task.task_key,
            dynamic_key=dynamic_key, flow_run_id=uuid.UUID(flow_run_id), tags=tags,
            run_count=1, start_time=start, end_time=end if done else None,
            total_run_time=(end - start) if done else _dt.timedelta(0))
        payload = {
            "intended": {"from": prior.value if prior else None, "to": state_type.value},
            "initial_state": ({"type": prior.value, "name": "Running", "message": None,
                               "state_details": {}} if prior else None),
            "validated_state": {"type": state_type.value, "name": state_name,
                                "message": state_message, "state_details": {},
                                "data": None},
            "task_run": task_run.model_dump(mode="json", exclude_none=True, exclude={
                "id", "created", "updated", "flow_run_id", "state_id", "state_type",
                "state_name", "state", "estimated_start_time_delta", "estimated_run_time"}),
        }
        events.append(Event(
            occurred=occurred, event=f"prefect.task-run.{state_name}", payload=payload,
            resource={"prefect.resource.id": f"prefect.task-run.{task_run_id}",
                      "prefect.resource.name": name, "prefect.run-count": "1",
                      "prefect.state-message": state_message or "",
                      "prefect.state-name": state_name,
                      "prefect.state-timestamp": occurred.isoformat(),
                      "prefect.state-type": state_type.value,
                      "prefect.orchestration": "client"},
            related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                      "prefect.resource.role": "flow-run"},
                     *({"prefect.resource.id": f"prefect.tag.{tag}",
                        "prefect.resource.role": "tag"} for tag in sorted(tags))]))
    return events


class TaskRunEvents:
    """The writer's events websocket to ``api_url`` (see the module docstring).

    ``sent``: ids of the task runs whose events went out; ``unavailable``: why the events
    path is not used (None while it is).
    """

    def __init__(self, api_url: str):
        self.api_url = api_url
        self.sent: List[str] = []
        self.unavailable: Optional[str] = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def emit(self, task: Any, flow_run_id: str, task_run_id: str, name: str,
                   dynamic_key: str, tags: List[str], start_t: float, end_t: float,
                   message: str) -> bool:
        """Send the task run's two events; False (and ``unavailable`` set) when the events
        path cannot be used, so the caller records it another way."""
        events = task_run_events(task, flow_run_id, task_run_id, name, dynamic_key, tags,
                                 start_t, end_t, message)
        async with self._lock:  # one task run's events go out together, in order
            if not await self._open():
                return False
            try:
                for event in events:
                    await self._client.emit(event)
            except Exception as exc:
                await self._give_up(f"sending failed: {type(exc).__name__}: {exc}")
                return False
        self.sent.append(task_run_id)
        return True

    async def ready(self) -> bool:
        """The websocket is open (opened now if it was not); False when it cannot be."""
        async with self._lock:
            return await self._open()

    async def close(self) -> None:
        """Close the websocket (what was sent is flushed first); bounded in time."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None:
                try:
                    await asyncio.wait_for(client.__aexit__(None, None, None), CLOSE_TIMEOUT_S)
                except Exception as exc:  # pragma: no cover - nothing left to do with it
                    log.debug("closing the Prefect events websocket failed: %s", exc)

    async def _open(self) -> bool:
        if self._client is not None:
            return True
        if self.unavailable is not None:
            return False
        try:
            client = self._connect()
            await asyncio.wait_for(client.__aenter__(), OPEN_TIMEOUT_S)
        except Exception as exc:
            await self._give_up(f"{type(exc).__name__}: {exc}")
            return False
        self._client = client
        return True

    def _connect(self) -> Any:
        """An events client for ``api_url`` (Prefect Cloud's when it is a Cloud URL)."""
        from prefect.events.clients import PrefectCloudEventsClient, PrefectEventsClient
        from prefect.settings import PREFECT_API_KEY, PREFECT_CLOUD_API_URL

        cloud = PREFECT_CLOUD_API_URL.value()
        if cloud and self.api_url.startswith(cloud):
            return PrefectCloudEventsClient(self.api_url, PREFECT_API_KEY.value(),
                                            reconnection_attempts=RECONNECTION_ATTEMPTS)
        return PrefectEventsClient(self.api_url, reconnection_attempts=RECONNECTION_ATTEMPTS)

    async def _give_up(self, why: str) -> None:
        self.unavailable = why.strip().splitlines()[0] if why.strip() else "unknown error"
        log.info("Prefect events are not usable at %s (%s): iteration task runs are created "
                 "through the REST API instead (stamped with the server's clock)",
                 self.api_url, self.unavailable)
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.__aexit__(None, None, None), CLOSE_TIMEOUT_S)
            except Exception:
                pass


async def unrecorded_task_runs(client: Any, ids: List[str], within_s: float) -> List[str]:
    """Those of the task runs ``ids`` the server has not recorded as Completed, read back
    through ``client`` (a ``PrefectClient``) in chunks of at most 200 ids, again every
    0.2 s while some are missing and ``within_s`` s have not passed."""
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    missing = list(dict.fromkeys(ids))
    deadline = time.monotonic() + within_s
    completed = TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED]))
    while missing:
        found = set()
        for i in range(0, len(missing), READ_CHUNK):
            chunk = [uuid.UUID(x) for x in missing[i:i + READ_CHUNK]]
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=chunk), state=completed),
                limit=READ_CHUNK)
            found.update(str(run.id) for run in runs)
        missing = [x for x in missing if x not in found]
        if not missing or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    return missing
