"""PrefectRecorder: the ONE writer of an experiment's Prefect records.

The controller's thread only enqueues events (``tunelib.recording.QueueRecorder``). A
background thread running its own asyncio loop and a single ``PrefectClient`` turns them
into REST writes (acknowledged: a write is recorded when its response arrives):

* experiment_started  -> flow run of flow ``experiment`` created in Running, named after the
                         experiment, tagged with it (+ POST /flows/ once per flow name)
* trial_started       -> task run in the experiment run standing for the subflow (as
                         Prefect's engine does for a subflow), then a flow run of flow
                         ``trial`` created in Running with ``parent_task_run_id`` = that task
                         run; the server mirrors the child's states onto it
                         (UpdateSubflowParentTask). Retries = max_failures.
                         Attempt >= 1 after a failure: Running named "Retrying" (run_count+1);
                         after a pause: Running "Resumed" in the same flow run.
                         Trials registered with register_external_trial_run (the
                         Prefect-workers executor's deployment runs): no flow run is
                         created and no state is set - Prefect's engine on the worker owns
                         them; only the iteration task runs below are added to that run.
* trial_result        -> buffered; consecutive results of one trial become ONE task run of
                         task ``iteration`` created directly in Completed, named
                         ``iteration 3-7``, the metrics in its state message. A buffer is
                         written when its oldest result is ``window`` s old and nothing of
                         that trial is in flight (so whatever piled up while the writer was
                         busy is coalesced), or before the trial's next state change.
* trial_failed        -> will_retry: propose Failed, the server's RetryFailedFlows rule turns it
                         into AwaitingRetry; else Failed (forced past the retry rule: the
                         controller decided).
* trial_paused        -> Paused (the resume is the next trial_started).
* trial_finished      -> TERMINATED: Completed; STOPPED: Completed named "Stopped" with the
                         message (see below); ERROR: Failed.
* experiment_finished -> one table artifact on the experiment run, then its final state.

Why a scheduler-stopped trial is Completed("Stopped") and not Cancelled: Ray reports it
TERMINATED - its results are valid and it can be the best trial. Prefect's Cancelled means
"interrupted by a user or the infrastructure": the UI greys it out with cancelled runs and
the experiment's subflow task run would turn Cancelled too. A Completed-type state keeps it
among the successes while the state name "Stopped" and the message say what happened.

State timestamps: Prefect's REST API stamps every state with the server's clock (its
StateCreate forbids a ``timestamp`` field); only the event path can back-date. The writer
usually lags by milliseconds; when it lags more than a second the message says when the
event happened. Iteration task runs carry their real time span in the message.

Writes per run and their cost are measured by bench/prefect_writes.py; ``stats`` holds
counts (writes, retries_503 - counted from prefect.client's DEBUG retry log - and
seconds_busy, plus per-kind counts/ms).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import math
import queue
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from flows.server import ServerHandle
from tunelib.recording import QueueRecorder

log = logging.getLogger("tunelib.recorder")

# keys of a Ray result that are bookkeeping, not metrics (left out of messages)
_AUTO_KEYS = {
    "time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname", "node_ip",
    "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
    "experiment_id", "trial_id", "config", "done", "should_checkpoint", "checkpoint_dir_name",
    "training_iteration", "episodes_total", "timesteps_total", "experiment_tag",
}
# Trials whose flow runs another engine creates and runs (the Prefect-workers executor's
# deployment runs): trial id -> flow run id. The recorder then only adds iteration task
# runs to that flow run; its states belong to Prefect's engine on the worker.
_EXTERNAL_TRIAL_RUNS: Dict[str, str] = {}


def register_external_trial_run(trial_id: str, flow_run_id: str) -> None:
    """Tell the recorder that ``trial_id``'s current flow run exists and is not ours to set."""
    _EXTERNAL_TRIAL_RUNS[trial_id] = flow_run_id


_RETRY_MSG = "Received response with retryable status code 503"
_CLOSE = ("__close__", 0.0, None)


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy (NaN/inf -> None, unknown objects -> repr)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    try:  # numpy scalars
        item = value.item()  # type: ignore[attr-defined]
        if isinstance(item, (bool, int, float, str)):
            return _jsonable(item)
    except Exception:
        pass
    return repr(value)


def _fmt_value(v: Any) -> Optional[str]:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and len(v) <= 40:
        return v
    try:
        item = v.item()
        if isinstance(item, (int, float, bool)):
            return _fmt_value(item)
    except Exception:
        pass
    return None


def metrics_text(result: dict, limit: int = 600) -> str:
    parts = []
    for k, v in result.items():
        if k in _AUTO_KEYS:
            continue
        s = _fmt_value(v)
        if s is not None:
            parts.append(f"{k}={s}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hms(t: float) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def artifact_key(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "experiment"
    return f"{slug[:60]}-summary"


def _state(type_: str, name: Optional[str] = None, message: Optional[str] = None,
           details: Optional[dict] = None) -> dict:
    st: Dict[str, Any] = {"type": type_, "state_details": details or {}}
    if name:
        st["name"] = name
    if message:
        st["message"] = message
    return st


class _Trial:
    __slots__ = (
        "trial_id", "name", "config", "max_failures", "retries", "flow_run_id",
        "parent_task_run_id", "buffer", "tail", "in_flight", "pending", "run_count",
        "status", "resumes", "seq", "last_result", "iterations_recorded", "started",
        "final_status", "external",
    )

    def __init__(self, trial_id: str, name: str):
        self.trial_id = trial_id
        self.name = name
        self.config: dict = {}
        self.max_failures = 0
        self.retries = 0
        self.flow_run_id: Optional[str] = None
        self.parent_task_run_id: Optional[str] = None
        self.buffer: List[tuple] = []          # (event time, result)
        self.tail: Optional[asyncio.Task] = None
        self.in_flight = 0                     # ops scheduled and not done
        self.pending: Dict[int, str] = {}      # op id -> what it records
        self.run_count = 0                     # times we entered Running (mirror of server)
        self.status = "new"                    # new|running|awaiting_retry|paused|final
        self.resumes = 0
        self.seq = 0
        self.last_result: dict = {}
        self.iterations_recorded = 0
        self.started = False
        self.final_status: Optional[str] = None
        self.external = False


class PrefectRecorder(QueueRecorder):
    """Records an experiment in Prefect from one background writer thread.

    Args:
        api_url: the Prefect API to use; default: PREFECT_API_URL (env/profile) or an
            embedded server started for this experiment (stopped at close()).
        window: seconds a trial's results may wait to be coalesced into one task run.
        max_in_flight: requests the writer keeps in flight at once (different runs only;
            each run's writes stay in order). 1 = strictly sequential.
        server_env: environment for an embedded server (default: flows.server's, with the
            run-acting services off); ``{}`` = Prefect's defaults.
    """

    def __init__(self, api_url: Optional[str] = None, window: float = 1.0,
                 max_in_flight: int = 1, server_env: Optional[Dict[str, str]] = None,
                 startup_timeout: int = 120):
        super().__init__()
        self.window = float(window)
        self.max_in_flight = max(1, int(max_in_flight))
        self.stats.update({
            "writes_failed": 0, "by_kind": {}, "events": 0, "max_lag_s": 0.0,
            "server_startup_s": None, "drain_s": None,
        })
        self._server = ServerHandle(api_url, extra_env=server_env,
                                    startup_timeout=startup_timeout).start()
        self._done = threading.Event()
        self._abort = False
        self._errors: List[str] = []
        self._trials: Dict[str, _Trial] = {}
        self._exp: Dict[str, Any] = {"name": None, "flow_run_id": None, "task": None,
                                     "final": None, "pending": {}}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._op_seq = 0
        self._busy_since: Optional[float] = None
        self._active = 0
        self._last_event_t = 0.0
        self._thread = threading.Thread(target=self._thread_main, name="tunelib-prefect-recorder",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def api_url(self) -> Optional[str]:
        return self._server.api_url if self._server.ready else None

    @property
    def experiment_flow_run_id(self) -> Optional[str]:
        return self._exp["flow_run_id"]

    def trial_flow_run_id(self, trial_id: str) -> Optional[str]:
        t = self._trials.get(trial_id)
        return t.flow_run_id if t else None

    def close(self, timeout: float) -> List[str]:
        """Drain: return once every write is acknowledged (or ``timeout`` s passed), then
        stop the embedded server. Returns what was not recorded (empty when all was)."""
        t0 = time.monotonic()
        self._put(_CLOSE)
        finished = self._done.wait(timeout)
        missing: List[str] = []
        if not finished:
            self._abort = True
            missing = self._missing()
            missing.insert(0, f"Prefect recording did not finish within {timeout:g} s")
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(lambda: None)
                except RuntimeError:
                    pass
            self._done.wait(2.0)
        else:
            missing = list(self._errors)
        self.stats["drain_s"] = round(time.monotonic() - t0, 3)
        self.stats["server_startup_s"] = self._server.startup_seconds
        try:
            self._server.stop()
        except Exception as exc:  # pragma: no cover
            missing.append(f"stopping the embedded Prefect server failed: {exc}")
        return missing

    # ------------------------------------------------------------------ accounting
    def _missing(self) -> List[str]:
        out: List[str] = []
        try:
            leftover = 0
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is not _CLOSE:
                    leftover += 1
            if leftover:
                out.append(f"{leftover} events not yet processed")
            for desc in list(self._exp["pending"].values()):
                out.append(f"experiment: {desc}")
            for t in list(self._trials.values()):
                parts = list(t.pending.values())
                if t.buffer:
                    its = [r.get("training_iteration") for _, r in t.buffer]
                    parts.append(f"{len(its)} buffered results (iterations {its[0]}-{its[-1]})")
                if parts:
                    out.append(f"trial {t.name}: " + "; ".join(parts))
            out.extend(self._errors)
        except Exception as exc:  # pragma: no cover
            out.append(f"(could not list what is missing: {exc})")
        return out

    # ------------------------------------------------------------------ writer thread
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - reported by close()
            self._errors.append(f"recorder stopped: {type(exc).__name__}: {exc}")
            log.exception("Prefect recorder stopped")
        finally:
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        # wait for the API while events pile up in the queue
        while not self._server._ready.is_set():
            if self._abort:
                return
            await asyncio.sleep(0.05)
        if self._server.error is not None:
            self._errors.append(f"no Prefect API: {self._server.error}")
            # drain the queue until close so nothing grows without bound
            while True:
                item = self._q.get()
                if item is _CLOSE:
                    self._errors.extend(self._missing())
                    return

        from prefect.client.orchestration import PrefectClient
        from prefect.tasks import Task

        from flows.experiment import experiment as experiment_flow
        from flows.trial import trial as trial_flow
        from tasks.iteration import iteration as iteration_task

        self._iteration_key = iteration_task.task_key
        self._subflow_key = Task(name=trial_flow.name, fn=trial_flow.fn).task_key
        self._flow_names = {"experiment": experiment_flow.name, "trial": trial_flow.name}
        self._flow_ids: Dict[str, asyncio.Task] = {}
        self._sem = asyncio.Semaphore(self.max_in_flight)

        counter = _RetryCounter(self.stats, threading.get_ident())
        client_logger = logging.getLogger("prefect.client")
        client_logger.addFilter(counter)
        saved_level = client_logger.level
        counter.passthrough_level = client_logger.getEffectiveLevel()
        client_logger.setLevel(logging.DEBUG)
        try:
            async with PrefectClient(api=self._server.api_url) as client:
                self._client = client
                await self._dispatch()
        finally:
            client_logger.setLevel(saved_level)
            client_logger.removeFilter(counter)

    async def _dispatch(self) -> None:
        closing = False
        get = self._q.get_nowait
        while not self._abort:
            got = 0
            while True:
                try:
                    item = get()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    closing = True
                    continue
                got += 1
                try:
                    self._handle(*item)
                except Exception as exc:  # bad event: report, keep going
                    self._errors.append(f"event {item[0]} could not be recorded: {exc!r}")
            self._flush_due(closing)
            if closing and self._idle():
                return
            await asyncio.sleep(0.005 if got else 0.02)
        # aborted: cancel what is outstanding
        for t in list(self._trials.values()):
            if t.tail is not None:
                t.tail.cancel()

    def _idle(self) -> bool:
        if self._exp["pending"]:
            return False
        return all(not t.in_flight and not t.buffer for t in self._trials.values())

    # ------------------------------------------------------------------ event handling
    def _handle(self, kind: str, t: float, args: tuple) -> None:
        self.stats["events"] += 1
        self._last_event_t = t
        if kind == "trial_result":
            trial_id, result = args
            tr = self._trials.get(trial_id) or self._new_trial(trial_id, trial_id)
            tr.buffer.append((t, result))
            return
        getattr(self, "_on_" + kind)(t, *args)

    def _new_trial(self, trial_id: str, name: str) -> _Trial:
        tr = _Trial(trial_id, name)
        self._trials[trial_id] = tr
        return tr

    def _on_experiment_started(self, t: float, name: str, parameters: dict, tags: list) -> None:
        self._exp["name"] = name
        self._exp["tags"] = list(dict.fromkeys([name, *tags]))
        params = _jsonable(parameters or {})
        self._exp["task"] = self._schedule(
            None, "experiment flow run", self._create_experiment(name, params, t))

    def _on_trial_started(self, t: float, trial_id: str, trial_name: str, config: dict,
                          max_failures: int, attempt: int) -> None:
        from flows.trial import retries_for

        tr = self._trials.get(trial_id)
        if tr is None:
            tr = self._new_trial(trial_id, trial_name)
        tr.name = trial_name
        self._flush(tr)
        external = _EXTERNAL_TRIAL_RUNS.get(trial_id)
        if external is not None:
            tr.external, tr.started, tr.status = True, True, "running"
            tr.flow_run_id = external
            return
        if not tr.started:
            tr.started = True
            tr.config = _jsonable(config or {})
            tr.max_failures = max_failures
            tr.retries = retries_for(max_failures)
            tr.run_count = 1
            tr.status = "running"
            self._schedule(tr, "trial flow run", self._create_trial(tr, t, attempt))
        elif tr.status == "paused":
            tr.resumes += 1
            tr.run_count += 1
            tr.status = "running"
            self._schedule(tr, "Running (resumed) state",
                           self._set_state(tr, t, _state("RUNNING", "Resumed",
                                                         f"resumed (attempt {attempt})")))
        else:  # a retry (after AwaitingRetry, or after a Failed the server let through)
            tr.run_count += 1
            tr.status = "running"
            self._schedule(tr, "Running (retrying) state",
                           self._set_state(tr, t, _state("RUNNING", "Retrying",
                                                         f"attempt {attempt + 1}")))

    def _on_trial_failed(self, t: float, trial_id: str, error: str, will_retry: bool) -> None:
        tr = self._trials.get(trial_id) or self._new_trial(trial_id, trial_id)
        self._flush(tr)
        if tr.external:
            return
        msg = (error or "failed").strip()
        if len(msg) > 2000:
            msg = "…" + msg[-1999:]
        if will_retry:
            tr.status = "awaiting_retry"
            if tr.run_count <= tr.retries:
                # the server's RetryFailedFlows rule turns this into AwaitingRetry
                st, force = _state("FAILED", None, msg), False
            else:  # run_count inflated by resumes: ask for AwaitingRetry directly
                st = _state("SCHEDULED", "AwaitingRetry", msg,
                            {"scheduled_time": _dt.datetime.now(_dt.timezone.utc).isoformat()})
                force = True
            self._schedule(tr, "Failed->AwaitingRetry state",
                           self._set_state(tr, t, st, force=force, expect_retry=True))
        else:
            tr.status = "failed_pending_finish"
            # forced: the controller decided there is no retry, whatever run_count says
            self._schedule(tr, "Failed state",
                           self._set_state(tr, t, _state("FAILED", None, msg), force=True))

    def _on_trial_paused(self, t: float, trial_id: str) -> None:
        tr = self._trials.get(trial_id) or self._new_trial(trial_id, trial_id)
        self._flush(tr)
        if tr.external:
            return
        tr.status = "paused"
        details = {"pause_key": uuid.uuid4().hex, "pause_reschedule": False}
        self._schedule(tr, "Paused state",
                       self._set_state(tr, t, _state("PAUSED", "Paused",
                                                     "paused by the scheduler", details)))

    def _on_trial_finished(self, t: float, trial_id: str, status: str, message: str = "") -> None:
        tr = self._trials.get(trial_id) or self._new_trial(trial_id, trial_id)
        self._flush(tr)
        if tr.external:
            tr.status, tr.final_status = "final", status
            return
        already_failed = tr.status == "failed_pending_finish"
        tr.status = "final"
        tr.final_status = status
        if status == "ERROR":
            if already_failed:
                return  # trial_failed(will_retry=False) already recorded Failed
            st, force = _state("FAILED", None, message or "trial errored"), True
        elif status == "STOPPED":
            st, force = _state("COMPLETED", "Stopped", message or "stopped early by the scheduler"), True
        else:
            st, force = _state("COMPLETED", None, message or None), True
        self._schedule(tr, f"final state ({st.get('name') or st['type'].title()})",
                       self._set_state(tr, t, st, force=force))

    def _on_experiment_finished(self, t: float, status: str, summary_rows: list) -> None:
        for tr in self._trials.values():
            self._flush(tr)
        rows = _jsonable(summary_rows or [])
        tails = [tr.tail for tr in self._trials.values() if tr.tail is not None]
        self._exp["final"] = self._schedule(
            None, "summary artifact and final experiment state",
            self._finish_experiment(status, rows, t, tails))

    # ------------------------------------------------------------------ coalescing
    def _flush_due(self, closing: bool) -> None:
        now = time.time()
        for tr in self._trials.values():
            if tr.buffer and not tr.in_flight and (
                    closing or now - tr.buffer[0][0] >= self.window):
                self._flush(tr)

    def _flush(self, tr: _Trial) -> None:
        if not tr.buffer:
            return
        batch, tr.buffer = tr.buffer, []
        tr.seq += 1
        its = [r.get("training_iteration") for _, r in batch]
        first = its[0] if its[0] is not None else tr.iterations_recorded + 1
        last = its[-1] if its[-1] is not None else first + len(batch) - 1
        self._schedule(tr, f"{len(batch)} results (iterations {first}-{last})",
                       self._create_iterations(tr, batch, first, last, tr.seq))

    # ------------------------------------------------------------------ op plumbing
    def _schedule(self, tr: Optional[_Trial], desc: str, coro) -> asyncio.Task:
        self._op_seq += 1
        op_id = self._op_seq
        pending = tr.pending if tr is not None else self._exp["pending"]
        pending[op_id] = desc
        prev = tr.tail if tr is not None else None
        if tr is not None:
            tr.in_flight += 1
        task = asyncio.ensure_future(self._run_op(tr, op_id, desc, prev, coro))
        if tr is not None:
            tr.tail = task
        return task

    async def _run_op(self, tr: Optional[_Trial], op_id: int, desc: str,
                      prev: Optional[asyncio.Task], coro) -> None:
        pending = tr.pending if tr is not None else self._exp["pending"]
        try:
            if prev is not None:
                await asyncio.wait([prev])
            if tr is not None and self._exp["task"] is not None:
                await asyncio.wait([self._exp["task"]])
            await coro
            pending.pop(op_id, None)
        except asyncio.CancelledError:
            coro.close()  # never started when cancelled while waiting its turn
            raise
        except Exception as exc:
            pending.pop(op_id, None)
            who = f"trial {tr.name}" if tr is not None else "experiment"
            self._errors.append(f"{who}: {desc} not recorded: {type(exc).__name__}: {exc}")
            self.stats["writes_failed"] += 1
            log.warning("Prefect recording of %s: %s failed: %s", who, desc, exc)
        finally:
            if tr is not None:
                tr.in_flight -= 1

    async def _request(self, kind: str, method: str, path: str, body: Any) -> Any:
        async with self._sem:
            t0 = time.perf_counter()
            if self._active == 0:
                self._busy_since = t0
            self._active += 1
            try:
                resp = await self._client._client.request(method, path, json=body)
            finally:
                self._active -= 1
                t1 = time.perf_counter()
                if self._active == 0 and self._busy_since is not None:
                    self.stats["seconds_busy"] += t1 - self._busy_since
                    self._busy_since = None
                k = self.stats["by_kind"].setdefault(kind, [0, 0.0])
                k[0] += 1
                k[1] += (t1 - t0) * 1000
            self.stats["writes"] += 1
            return resp.json() if resp.content else None

    def _lag_note(self, t: float) -> str:
        lag = time.time() - t
        if lag > self.stats["max_lag_s"]:
            self.stats["max_lag_s"] = round(lag, 3)
        return f" (at {_hms(t)}, recorded {lag:.1f} s later)" if lag > 1.0 else ""

    async def _flow_id(self, which: str) -> str:
        task = self._flow_ids.get(which)
        if task is None:
            async def create() -> str:
                data = await self._request("flow", "POST", "/flows/",
                                           {"name": self._flow_names[which]})
                return data["id"]
            task = self._flow_ids[which] = asyncio.ensure_future(create())
        return await task

    # ------------------------------------------------------------------ the writes
    async def _create_experiment(self, name: str, params: dict, t: float) -> None:
        flow_id = await self._flow_id("experiment")
        body = {
            "flow_id": flow_id, "name": name, "parameters": params,
            "tags": self._exp["tags"],
            "state": _state("RUNNING", None, f"experiment started{self._lag_note(t)}".strip()),
            "idempotency_key": f"tunelib-experiment-{uuid.uuid4().hex}",
        }
        data = await self._request("flow_run", "POST", "/flow_runs/", body)
        self._exp["flow_run_id"] = data["id"]

    async def _create_trial(self, tr: _Trial, t: float, attempt: int) -> None:
        flow_id = await self._flow_id("trial")
        exp_id = self._exp["flow_run_id"]
        tags = list(dict.fromkeys([*( [self._exp["name"]] if self._exp["name"] else []),
                                   tr.trial_id]))
        parent_id = None
        if exp_id is not None:
            parent_id = str(uuid.uuid4())
            await self._request("task_run", "POST", "/task_runs/", {
                "id": parent_id, "name": tr.name, "flow_run_id": exp_id,
                "task_key": self._subflow_key, "dynamic_key": tr.trial_id,
                "tags": tags, "state": _state("PENDING"), "task_inputs": {},
            })
            tr.parent_task_run_id = parent_id
        body = {
            "flow_id": flow_id, "name": tr.name, "parameters": {"config": tr.config},
            "tags": tags, "parent_task_run_id": parent_id,
            "empirical_policy": {"retries": tr.retries, "retry_delay": 0},
            "state": _state("RUNNING", None,
                            (f"attempt {attempt + 1}" if attempt else "started")
                            + self._lag_note(t)),
            "idempotency_key": f"tunelib-trial-{exp_id}-{tr.trial_id}-{uuid.uuid4().hex[:8]}",
        }
        data = await self._request("flow_run", "POST", "/flow_runs/", body)
        tr.flow_run_id = data["id"]

    async def _create_iterations(self, tr: _Trial, batch: List[tuple], first: Any, last: Any,
                                 seq: int) -> None:
        from tasks.iteration import task_run_name

        if tr.flow_run_id is None:
            raise RuntimeError("the trial's flow run was not created")
        t0, t1 = batch[0][0], batch[-1][0]
        res = batch[-1][1]
        n = len(batch)
        span = f"{_hms(t0)}" if n == 1 else f"{_hms(t0)}–{_hms(t1)}"
        msg = f"{n} result{'s' if n > 1 else ''} at {span}; last: {metrics_text(res)}"
        await self._request("task_run", "POST", "/task_runs/", {
            "name": task_run_name(first, last), "flow_run_id": tr.flow_run_id,
            "task_key": self._iteration_key, "dynamic_key": f"{first}-{last}-{seq}",
            "tags": [t for t in (self._exp["name"], tr.trial_id) if t],
            "state": _state("COMPLETED", None, msg), "task_inputs": {},
        })
        tr.last_result = res
        tr.iterations_recorded += n

    async def _set_state(self, tr: _Trial, t: float, state: dict, force: bool = False,
                         expect_retry: bool = False) -> None:
        if tr.flow_run_id is None:
            raise RuntimeError("the trial's flow run was not created")
        state = dict(state)
        note = self._lag_note(t)
        if note:
            state["message"] = ((state.get("message") or "") + note).strip()
        path = f"/flow_runs/{tr.flow_run_id}/set_state"
        data = await self._request("set_state", "POST", path, {"state": state, "force": force})
        status = (data or {}).get("status")
        new_type = ((data or {}).get("state") or {}).get("type")
        if status == "ACCEPT":
            return
        if expect_retry and status == "REJECT" and new_type == "SCHEDULED":
            return  # Failed -> AwaitingRetry, as intended
        if force:
            raise RuntimeError(f"server answered {status}: {(data or {}).get('details')}")
        # the server's rules disagreed with the controller: the controller is right
        data = await self._request("set_state", "POST", path, {"state": state, "force": True})
        if (data or {}).get("status") != "ACCEPT":
            raise RuntimeError(f"server answered {data.get('status')}: {data.get('details')}")

    async def _finish_experiment(self, status: str, rows: list, t: float,
                                 tails: List[asyncio.Task]) -> None:
        if tails:
            await asyncio.wait(tails)
        # trials that were not finished explicitly still have to wait for their writes
        busy = [tr.tail for tr in self._trials.values() if tr.tail is not None and not tr.tail.done()]
        if busy:
            await asyncio.wait(busy)
        exp_id = self._exp["flow_run_id"]
        if exp_id is None:
            raise RuntimeError("the experiment's flow run was not created")
        name = self._exp["name"] or "experiment"
        counts: Dict[str, int] = {}
        for r in rows:
            s = str(r.get("status", "?")) if isinstance(r, dict) else "?"
            counts[s] = counts.get(s, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials"
        await self._request("artifact", "POST", "/artifacts/", {
            "key": artifact_key(name), "type": "table",
            "description": f"Trials of experiment {name}: {summary}",
            "data": json.dumps(rows), "flow_run_id": exp_id,
        })
        ok = str(status).upper() in ("COMPLETED", "TERMINATED", "SUCCESS", "OK", "FINISHED")
        st = _state("COMPLETED" if ok else "FAILED", None,
                    f"{len(rows)} trials: {summary}{self._lag_note(t)}")
        await self._request("set_state", "POST", f"/flow_runs/{exp_id}/set_state",
                            {"state": st, "force": True})


class _RetryCounter(logging.Filter):
    """Counts prefect.client's DEBUG 'retryable status code 503' lines from our thread.

    The recorder lowers prefect.client's level to DEBUG to see them; this filter drops
    every record below the level the logger had before, so nothing else changes.
    """

    def __init__(self, stats: dict, thread_ident: int):
        super().__init__()
        self.stats = stats
        self.thread_ident = thread_ident
        self.passthrough_level = logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread == self.thread_ident and record.levelno == logging.DEBUG:
            try:
                msg = record.getMessage()
            except Exception:
                msg = ""
            if msg.startswith(_RETRY_MSG):
                self.stats["retries_503"] += 1
            elif msg.startswith("Received response with retryable status code"):
                self.stats["retries_other"] = self.stats.get("retries_other", 0) + 1
        return record.levelno >= self.passthrough_level
