"""The embedded server's app: Prefect's own (``prefect.server.api.server.create_app``) plus
ONE route that records whole trials in one transaction.

    POST /api/tunelib/trials   {"trials": [<trial record>, ...]}  ->  {"created": N}
    GET  /api/tunelib/health   ->  {"version": 1}   (the recorder asks before using it)

Why: through Prefect's REST API a one-iteration trial costs four requests (the subflow's
stand-in task run, the flow run, its final state, its metric table), 20-30 ms each on
SQLite, one at a time: 10,000 trials take ~17 minutes to record. A trial that started and
ended between two of the recorder's flushes is already complete when it is written, so
the recorder sends it as one record, and this route writes a batch of them with Prefect's
own ORM models in one transaction - the rows Prefect's orchestration would have written
for the same states (flow run, its states with their TRUE times, the stand-in task run
mirroring them with ``child_flow_run_id`` as ``UpdateSubflowParentTask`` does, iteration
task runs, logs, artifacts and their collection's latest version, as
``models.artifacts.create_artifact`` keeps it).

Only tunelib's embedded server has the route (it is launched with this factory); any other
Prefect API answers 404 to the health check and the recorder uses REST.

A trial record (JSON)::

    {"flow_run": {"id", "flow_id", "name", "parameters", "tags", "idempotency_key",
                  "parent_task_run_id" (or null), "retries",
                  "states": [{"type", "name", "timestamp" (ISO 8601), "message"}, ...]},
     "parent_task_run": {"id", "flow_run_id", "task_key", "dynamic_key", "name", "tags"}
                        (or null: its states mirror the flow run's),
     "task_runs": [{"id", "task_key", "dynamic_key", "name", "tags", "start", "end",
                    "message"}, ...]     (Completed task runs in the flow run),
     "logs": [{"name", "level", "message", "timestamp"}, ...],
     "artifacts": [{"key", "type", "description", "data"}, ...]}
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any, Dict, List, Optional

ROUTE = "/tunelib/trials"
HEALTH_ROUTE = "/tunelib/health"
VERSION = 1
MAX_TRIALS = 2000   # per request


def create_app():
    """Prefect's server app with the bulk trial route on its API."""
    from prefect.server.api.server import create_app as prefect_create_app

    app = prefect_create_app()
    add_routes(app.api_app)
    return app


def add_routes(api_app) -> None:
    """Add ``POST /tunelib/trials`` and ``GET /tunelib/health`` to a Prefect API app."""
    from fastapi import Body, HTTPException

    trials_body = Body(..., embed=True)

    async def health() -> Dict[str, int]:
        return {"version": VERSION}

    async def create_trials(trials: List[Dict[str, Any]] = trials_body) -> Dict[str, int]:
        if len(trials) > MAX_TRIALS:
            raise HTTPException(422, f"at most {MAX_TRIALS} trials per request, got {len(trials)}")
        try:
            rows = _Rows.of(trials)
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"bad trial record: {type(exc).__name__}: {exc}") from None
        await rows.write()
        return {"created": len(trials)}

    api_app.add_api_route(HEALTH_ROUTE, health, methods=["GET"], include_in_schema=False)
    api_app.add_api_route(ROUTE, create_trials, methods=["POST"], include_in_schema=False)


def _ts(text: str) -> _dt.datetime:
    t = _dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _uuid(text: Optional[str]) -> Optional[uuid.UUID]:
    return uuid.UUID(text) if text else None


_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _run_fields(states: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What Prefect's orchestration keeps on a run for this history of states: the current
    state's columns, run_count (entries into Running), start/end time, total run time."""
    last = states[-1]
    fields: Dict[str, Any] = {
        "state_type": last["type"], "state_name": last["name"],
        "state_timestamp": last["timestamp"], "run_count": 0, "start_time": None,
        "end_time": last["timestamp"] if last["type"].value in _TERMINAL else None,
        "total_run_time": _dt.timedelta(0), "expected_start_time": states[0]["timestamp"]}
    running_since = None
    for s in states:
        if running_since is not None:
            fields["total_run_time"] += s["timestamp"] - running_since
            running_since = None
        if s["type"].value == "RUNNING":
            fields["run_count"] += 1
            fields["start_time"] = fields["start_time"] or s["timestamp"]
            running_since = s["timestamp"]
    return fields


class _Rows:
    """The rows of a batch of trial records, per table, in insert order."""

    def __init__(self) -> None:
        self.parents: List[dict] = []        # stand-in task runs (before their flow runs)
        self.flow_runs: List[dict] = []
        self.flow_run_states: List[dict] = []
        self.task_runs: List[dict] = []      # iteration task runs (after their flow runs)
        self.task_run_states: List[dict] = []
        self.logs: List[dict] = []
        self.artifacts: List[dict] = []

    @classmethod
    def of(cls, trials: List[Dict[str, Any]]) -> "_Rows":
        from prefect.server.schemas.states import StateType

        rows = cls()
        now = _dt.datetime.now(_dt.timezone.utc)
        for rec in trials:
            fr = rec["flow_run"]
            fr_id = uuid.UUID(fr["id"])
            parent = rec.get("parent_task_run")
            parent_id = uuid.UUID(parent["id"]) if parent else None
            states = [{"id": uuid.uuid4(), "type": StateType(s["type"]), "name": s["name"],
                       "timestamp": _ts(s["timestamp"]), "message": s.get("message")}
                      for s in fr["states"]]
            if not states:
                raise ValueError(f"flow run {fr_id} has no states")
            for s in states:
                rows.flow_run_states.append(dict(
                    s, flow_run_id=fr_id, created=now, updated=now,
                    state_details={"flow_run_id": str(fr_id),
                                   "task_run_id": str(parent_id) if parent_id else None}))
            rows.flow_runs.append(dict(
                _run_fields(states), id=fr_id, created=now, updated=now,
                flow_id=uuid.UUID(fr["flow_id"]), name=fr["name"],
                parameters=fr.get("parameters") or {}, tags=list(fr.get("tags") or []),
                idempotency_key=fr.get("idempotency_key"), parent_task_run_id=parent_id,
                empirical_policy={"retries": int(fr.get("retries") or 0), "retry_delay": 0},
                labels={"prefect.flow.id": fr["flow_id"]}, _state_id=states[-1]["id"]))
            if parent:
                # the subflow's stand-in: Pending when the child starts, then the child's
                # states, each naming it (UpdateSubflowParentTask)
                pending = {"id": uuid.uuid4(), "type": StateType.PENDING, "name": "Pending",
                           "timestamp": states[0]["timestamp"] - _dt.timedelta(microseconds=1),
                           "message": None}
                mirrored = [pending, *({**s, "id": uuid.uuid4()} for s in states)]
                rows._task_run(parent, uuid.UUID(parent["flow_run_id"]), mirrored, now,
                               rows.parents, {"child_flow_run_id": str(fr_id)})
            for tr in rec.get("task_runs") or []:
                start, end = _ts(tr["start"]), _ts(tr["end"])
                running_at = min(start, end - _dt.timedelta(microseconds=1))
                rows._task_run(tr, fr_id, [
                    {"id": uuid.uuid4(), "type": StateType.RUNNING, "name": "Running",
                     "timestamp": running_at, "message": None},
                    {"id": uuid.uuid4(), "type": StateType.COMPLETED, "name": "Completed",
                     "timestamp": end, "message": tr.get("message")}], now, rows.task_runs, {})
            for line in rec.get("logs") or []:
                rows.logs.append(dict(
                    id=uuid.uuid4(), created=now, updated=now, flow_run_id=fr_id,
                    task_run_id=None, name=str(line["name"]), level=int(line["level"]),
                    message=str(line["message"]), timestamp=_ts(line["timestamp"])))
            for art in rec.get("artifacts") or []:
                rows.artifacts.append(dict(
                    id=uuid.uuid4(), created=now, updated=now, key=art.get("key"),
                    type=art.get("type"), description=art.get("description"),
                    data=art.get("data"), flow_run_id=fr_id, task_run_id=None))
        return rows

    def _task_run(self, tr: Dict[str, Any], flow_run_id: uuid.UUID, states: List[dict],
                  now: _dt.datetime, into: List[dict], details: Dict[str, Any]) -> None:
        tr_id = uuid.UUID(tr["id"])
        for s in states:
            self.task_run_states.append(dict(
                s, task_run_id=tr_id, created=now, updated=now,
                state_details={"task_run_id": str(tr_id), "flow_run_id": str(flow_run_id),
                               **details}))
        fields = _run_fields(states)
        fields["flow_run_run_count"] = 1
        into.append(dict(
            fields, id=tr_id, created=now, updated=now, flow_run_id=flow_run_id,
            task_key=tr["task_key"], dynamic_key=str(tr["dynamic_key"]), name=tr["name"],
            tags=list(tr.get("tags") or []), state_id=states[-1]["id"],
            empirical_policy={}, task_inputs={}))

    async def write(self) -> None:
        """Insert every row in one transaction (foreign keys in dependency order), as
        Core executemany statements (the ORM's bulk path costs ~10x more per state row)."""
        import sqlalchemy as sa
        from prefect.server.database import provide_database_interface

        db = provide_database_interface()
        now = _dt.datetime.now(_dt.timezone.utc)
        flow_state_ids = [(r["id"], r.pop("_state_id")) for r in self.flow_runs]
        # IMMEDIATE on SQLite: wait for another writer instead of failing ("database is
        # locked", a 503 the client retries seconds later) when the read turns into a write
        async with db.session_context(begin_transaction=True, with_for_update=True) as session:
            for model, rows in ((db.TaskRun, self.parents), (db.FlowRun, self.flow_runs),
                                (db.FlowRunState, self.flow_run_states),
                                (db.TaskRun, self.task_runs),
                                (db.TaskRunState, self.task_run_states), (db.Log, self.logs),
                                (db.Artifact, self.artifacts)):
                if rows:
                    await session.execute(sa.insert(model.__table__), rows)
            if flow_state_ids:
                table = db.FlowRun.__table__
                await session.execute(
                    sa.update(table).where(table.c.id == sa.bindparam("run_id"))
                    .values(state_id=sa.bindparam("state_id"), updated=sa.bindparam("now")),
                    [{"run_id": run, "state_id": state, "now": now}
                     for run, state in flow_state_ids])
            keyed = [a for a in self.artifacts if a["key"] is not None]
            if keyed:   # the latest version of each key (models.artifacts.create_artifact)
                insert = db.queries.insert(db.ArtifactCollection.__table__)
                upsert = insert.on_conflict_do_update(
                    index_elements=db.orm.artifact_collection_unique_upsert_columns,
                    set_={c: getattr(insert.excluded, c) for c in (
                        "latest_id", "updated", "type", "description", "data", "flow_run_id",
                        "task_run_id")})
                await session.execute(upsert, [
                    dict(id=uuid.uuid4(), created=now, updated=now, latest_id=a["id"],
                         key=a["key"], type=a["type"], description=a["description"],
                         data=a["data"], flow_run_id=a["flow_run_id"], task_run_id=None)
                    for a in keyed])
