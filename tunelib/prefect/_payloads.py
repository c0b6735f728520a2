"""What the Prefect records say: state specs and the typed Prefect objects built from them,
run and artifact bodies, and the texts (metrics, names, keys) shown in the UI.

Pure functions; Prefect's schema classes are imported where a body is built (on the
recorder's writer thread), so importing this module stays cheap.

Example::

    >>> task_run_name(3, 7), artifact_key("My Exp"), retries_for(-1) == UNLIMITED_RETRIES
    ('iteration 3-7', 'my-exp-summary', True)
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, Iterable, List, Optional

from tunelib._layout import to_json_value

# max_failures=-1 means "retry forever" in Ray; Prefect needs a number of retries.
# A million retries is "forever" for any real experiment.
UNLIMITED_RETRIES = 1_000_000

# A scheduler-stopped trial: Completed with this name (see recorder.py for why).
STOPPED_STATE_NAME = "Stopped"
STOPPED_MESSAGE = "stopped early by the scheduler"
# Cancelled from Prefect (TrialOutcome.CANCELLED), or interrupted with the experiment and
# resumable (TrialOutcome.INTERRUPTED): both end the run Cancelled, the message says which.
CANCELLED_MESSAGE = "cancelled from Prefect"
INTERRUPTED_MESSAGE = ("interrupted with the experiment; resumes when the experiment is "
                       "resumed")

# keys of a Ray result that are bookkeeping, not metrics (left out of messages and of the
# leaderboard's metric columns)
AUTO_KEYS = frozenset({
    "time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname", "node_ip",
    "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
    "experiment_id", "trial_id", "config", "done", "should_checkpoint", "checkpoint_dir_name",
    "training_iteration", "episodes_total", "timesteps_total", "experiment_tag",
})


def retries_for(max_failures: int, failures: int = 0) -> int:
    """Prefect retries for Ray's ``max_failures`` (-1 = unlimited) when ``failures`` of them
    are used up already."""
    if max_failures == -1:
        return UNLIMITED_RETRIES
    return max(0, int(max_failures) - failures)


def jsonable(value: Any) -> Any:
    """A copy Prefect's JSON accepts (no NaN/inf; unknown objects as their repr)."""
    return to_json_value(value, finite=True)


def task_run_name(first: int, last: int) -> str:
    """``iteration 3`` or ``iteration 3-7`` for a coalesced range."""
    return f"iteration {first}" if first == last else f"iteration {first}-{last}"


def key_slug(text: str, limit: int = 60) -> str:
    """``text`` as an artifact key part: lowercase letters, digits and dashes (Prefect's
    rule), at most ``limit`` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def artifact_key(name: str, suffix: str = "summary") -> str:
    """The key of the experiment ``name``'s ``suffix`` artifact (the recorder's artifacts:
    :mod:`tunelib.prefect._artifact_content`)."""
    return f"{key_slug(name) or 'experiment'}-{suffix}"


def _fmt_value(v: Any) -> Optional[str]:
    if isinstance(v, (bool, int)):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and len(v) <= 40:
        return v
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item):
        try:
            value = item()
        except Exception:
            return None
        if isinstance(value, (int, float, bool)):
            return _fmt_value(value)
    return None


def metrics_text(result: dict, limit: int = 600) -> str:
    """``loss=0.12, acc=0.9``: a result's metrics, bookkeeping keys left out."""
    parts = []
    for k, v in result.items():
        if k in AUTO_KEYS:
            continue
        s = _fmt_value(v)
        if s is not None:
            parts.append(f"{k}={s}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hms(t: float) -> str:
    """A wall-clock time as ``HH:MM:SS.mmm`` (local time)."""
    return _dt.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def iterations_message(batch: List[tuple]) -> str:
    """The state message of one coalesced iteration task run: ``(event time, result)`` pairs."""
    n = len(batch)
    t0, t1 = batch[0][0], batch[-1][0]
    span = hms(t0) if n == 1 else f"{hms(t0)}–{hms(t1)}"
    return f"{n} result{'s' if n > 1 else ''} at {span}; last: {metrics_text(batch[-1][1])}"


def summary_text(rows: Iterable[Any]) -> str:
    """``2 ERROR, 6 TERMINATED`` for the experiment's summary rows."""
    counts: Dict[str, int] = {}
    for r in rows:
        s = str(r.get("status", "?")) if isinstance(r, dict) else "?"
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials"


# --------------------------------------------------------------------------- states
class StateKind(StrEnum):
    """The states the recorder sets (Prefect's state types, AwaitingRetry apart)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PAUSED = "PAUSED"
    AWAITING_RETRY = "AWAITING_RETRY"   # SCHEDULED named AwaitingRetry
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class StateSpec:
    """A state to set: its kind, name (None: Prefect's default) and message."""

    kind: StateKind
    name: Optional[str] = None
    message: Optional[str] = None

    def with_note(self, note: str) -> "StateSpec":
        if not note:
            return self
        return StateSpec(self.kind, self.name, ((self.message or "") + note).strip())

    def describe(self) -> str:
        return self.name or self.kind.title()


@dataclass(frozen=True)
class StateChange:
    """A trial state write: the state, and how the server's rules are to be handled.

    ``force``: set it past the orchestration rules (the controller decided).
    ``expect_retry``: a Failed the server's retry rule answers with AwaitingRetry is right.
    ``create``: the trial's flow run does not exist yet; it is created in ``state``.
    """

    state: StateSpec
    describe: str
    force: bool = False
    expect_retry: bool = False
    create: bool = False


def prefect_state(spec: StateSpec):
    """The ``prefect.client.schemas.objects.State`` for ``spec`` (a Paused one gets a fresh
    pause key and is not rescheduled)."""
    from prefect import states

    kw = {"message": spec.message}
    if spec.name is not None:
        kw["name"] = spec.name
    if spec.kind is StateKind.AWAITING_RETRY:
        return states.AwaitingRetry(scheduled_time=_dt.datetime.now(_dt.timezone.utc), **kw)
    if spec.kind is StateKind.PAUSED:
        return states.Paused(pause_key=uuid.uuid4().hex, reschedule=False, **kw)
    return {
        StateKind.PENDING: states.Pending,
        StateKind.RUNNING: states.Running,
        StateKind.COMPLETED: states.Completed,
        StateKind.FAILED: states.Failed,
        StateKind.CANCELLED: states.Cancelled,
    }[spec.kind](**kw)


def flow_run_body(flow_id: Any, name: str, parameters: dict, tags: List[str], state: StateSpec,
                  idempotency_key: str, parent_task_run_id: Any = None,
                  retries: Optional[int] = None) -> dict:
    """The JSON of ``POST /flow_runs/`` (``FlowRunCreate``), created directly in ``state``."""
    from prefect.client.schemas.actions import FlowRunCreate
    from prefect.client.schemas.objects import FlowRunPolicy
    from prefect.states import to_state_create

    fields: Dict[str, Any] = dict(
        flow_id=flow_id, name=name, parameters=parameters, tags=tags,
        state=to_state_create(prefect_state(state)), idempotency_key=idempotency_key)
    if parent_task_run_id is not None:
        fields["parent_task_run_id"] = parent_task_run_id
    if retries is not None:
        fields["empirical_policy"] = FlowRunPolicy(retries=retries, retry_delay=0)
    return FlowRunCreate(**fields).model_dump(mode="json", exclude_unset=True)


def artifact_create_body(key: str, kind: str, description: str, data: Any,
                         flow_run_id: Any) -> dict:
    """The JSON of ``POST /artifacts/`` (``ArtifactCreate``) on the flow run ``flow_run_id``."""
    from prefect.client.schemas.actions import ArtifactCreate

    return ArtifactCreate(key=key, type=kind, description=description, data=data,
                          flow_run_id=flow_run_id).model_dump(mode="json", exclude_unset=True)


def artifact_update_body(description: str, data: Any) -> dict:
    """The JSON of ``PATCH /artifacts/{id}`` (``ArtifactUpdate``): new data and description."""
    from prefect.client.schemas.actions import ArtifactUpdate

    return ArtifactUpdate(data=data, description=description).model_dump(
        mode="json", exclude_unset=True)
