"""PrefectRecorder: the ONE writer of an experiment's Prefect records.

The controller's thread only enqueues events (``tunelib.recording.QueueRecorder``). A
background thread running its own asyncio loop and a single ``PrefectClient`` turns them
into REST writes (acknowledged: a write is recorded when its response arrives):

* experiment_started  -> flow run of flow ``experiment`` created in Running, named after the
                         experiment, tagged with it (+ the flow itself once per flow name);
                         with a ``caller`` (fit() inside a flow or task) through the caller's
                         API, as a subflow of its run (a Pending stand-in task run in the
                         caller's flow run, then the experiment run with it as parent).
* trial_attached      -> the trial's flow run is a deployment run Prefect's engine runs on a
                         worker (the Prefect-workers executor): no flow run is created and no
                         state is set for it; only the iteration task runs are added to it.
* trial_started       -> task run in the experiment run standing for the subflow (as
                         Prefect's engine does for a subflow), then a flow run of flow
                         ``trial`` created in Running with ``parent_task_run_id`` = that task
                         run; the server mirrors the child's states onto it
                         (UpdateSubflowParentTask). Retries = max_failures.
                         Attempt >= 1 after a failure: Running named "Retrying" (run_count+1);
                         after a pause: Running "Resumed" in the same flow run.
* trial_result        -> buffered; consecutive results of one trial become ONE task run of
                         task ``iteration``, Completed, named ``iteration 3-7``, the metrics
                         in its state message, its start/end time those of its first/last
                         result: sent as two events (Running, Completed) on the writer's
                         events websocket, which the server's task-run recorder turns into
                         the task run, as for the task runs of Prefect's own engine
                         (``_events``; through REST, server-stamped, when the websocket
                         cannot be used - said once at INFO). A buffer is
                         written when its oldest result is ``window`` s old and nothing of
                         that trial is in flight (so whatever piled up while the writer was
                         busy is coalesced), or before the trial's next state change.
* trial_failed        -> will_retry: propose Failed, the server's RetryFailedFlows rule turns it
                         into AwaitingRetry; else Failed (forced past the retry rule: the
                         controller decided).
* trial_paused        -> Paused (the resume is the next trial_started).
* trial_finished      -> TERMINATED: Completed; STOPPED: Completed named "Stopped" with the
                         message (see below); ERROR: Failed; CANCELLED (from Prefect) and
                         INTERRUPTED (with the experiment; resumable): Cancelled (forced:
                         also past a Cancelling the UI set), the message says which.
* trial_logs / experiment_log -> batched per flow run, ``POST /logs/`` with each line's own
                         time (``_logs``); a failed attempt's traceback is an ERROR line too.
* experiment_finished -> the summary as log lines, the final leaderboard, progress and
                         learning-curve artifacts on the experiment run, then its final
                         state (Completed, Failed, or Cancelled for CANCELLED).

Cancel (``watch_cancel``): while a callback is registered the writer asks Prefect once a
second, in ONE request, whether the experiment's run or a live trial's run is Cancelling
or Cancelled, and calls the callback once per run (``_cancel_watch``).

A dead server: the client retries a lost connection itself (2, 4, 8 ... s); when one still
fails, the server is taken as gone - nothing more is scheduled, the rest is counted.
``close()`` stops waiting as soon as no write was acknowledged for 3 s and the server's
/health does not answer, and returns ONE summary line (why, and what was not recorded by
kind) with at most 5 lines of per-trial detail. Prefect's and httpx's log records from the
writer thread are dropped, so the summary is the only message. When close() waits more
than 2 s it says once what is left (``progress``, default a WARNING on
``tunelib.recorder``).

Artifacts (``_artifact_book``: when; ``_artifact_content``: what; ``_artifacts``: the
writes): on the experiment run a leaderboard table (a new version under one key at each
rewrite), a progress artifact and a markdown artifact with the learning curves as an
inline SVG, rewritten while trials start and end - coalesced behind throttles (>= 2 s
apart, later than that while the writer is behind with the runs' records) - and once at
the end; on each trial run, its metric table (the rows of its progress.csv, at most 1,000
evenly spaced) and links to its latest and best checkpoints, written once when it ends
(and when it stays paused for 10 s). Results never wait for any of it: the writer keeps
what the artifacts need (bounded) as it takes the events.

Which writes an event schedules: ``_record``; a trial's phases and state changes:
``_trial_runs``; the order of writes per trial: ``_op_queue``; bodies and texts:
``_payloads``; the requests and their counts: ``_writes``.

Why a scheduler-stopped trial is Completed("Stopped") and not Cancelled: Ray reports it
TERMINATED - its results are valid and it can be the best trial. Prefect's Cancelled means
"interrupted by a user or the infrastructure": the UI greys it out with cancelled runs and
the experiment's subflow task run would turn Cancelled too. A Completed-type state keeps it
among the successes while the state name "Stopped" and the message say what happened.

State timestamps: Prefect's REST API stamps every state with the server's clock (its
StateCreate forbids a ``timestamp`` field); only the event path can back-date. The writer
usually lags by milliseconds; when it lags more than a second the message says when the
event happened. Iteration task runs go by events and carry their true times.

Events have no per-event answer and the server ingests them asynchronously: close() reads
the iteration task runs back (by id, a few requests) for up to 5 s after the last write and
lists those still missing as "N iteration task runs not recorded".

The lag of flow-run state timestamps behind the events (server clock vs. event time) is
measured in ``stats["max_lag_s"]``.

``stats`` holds counts: writes, writes_failed, retries_503 (503 answers, each retried by
the client), seconds_busy, by_kind (kind -> [count, ms]), events, max_lag_s, drain_s.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from typing import Callable, Dict, List, Optional

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome
from tunelib.prefect._caller import CallerRun
from tunelib.prefect._cancel_watch import CancelWatch, cancelled_runs
from tunelib.prefect._record import ExperimentRecord
from tunelib.prefect.server import ServerHandle
from tunelib.recording import CancelCallback, QueueRecorder, RunContext

log = logging.getLogger("tunelib.recorder")

_CLOSE = ("__close__", 0.0, None)
# events passed to ExperimentRecord's method of the same name as they are
_PLAIN_EVENTS = frozenset({"experiment_started", "trial_attached", "trial_started",
                           "trial_failed", "trial_paused", "trial_logs", "experiment_log"})
_THREAD_NAME = "tunelib-prefect-recorder"
# close(): say what is left after this long; take the server as gone when no write was
# acknowledged for this long and its /health does not answer
SAY_WAITING_AFTER_S = 2.0
SILENT_SERVER_S = 3.0
MAX_DETAIL_LINES = 5
# close(): how long the server's task-run recorder may take to store the iteration task
# runs sent as events
EVENTS_INGEST_WAIT_S = 5.0
# Prefect's loggers that would repeat a dead server's error once per request
_QUIET_LOGGERS = ("prefect", "prefect.client", "prefect.events.clients", "httpx")


class PrefectRecorder(QueueRecorder):
    """Records an experiment in Prefect from one background writer thread.

    Args:
        api_url: the Prefect API to use; default: the caller's (``caller``), PREFECT_API_URL
            (env/profile) or an embedded server started for this experiment (stopped at
            close()).
        window: seconds a trial's results (and log lines) may wait to be coalesced.
        max_in_flight: requests the writer keeps in flight at once (different runs only;
            each run's writes stay in order). 1 = strictly sequential.
        server_env: environment for an embedded server (default:
            ``tunelib.prefect.server.EMBEDDED_SERVER_ENV``); ``{}`` = Prefect's defaults.
        caller: the flow (or task) run fit() was called in (``_caller.caller_run()``): the
            experiment is recorded through its API as a subflow of its run.
        progress: told (once) what close() still waits for when it waits more than 2 s;
            default: a WARNING on the ``tunelib.recorder`` logger.

    Example::

        rec = PrefectRecorder(window=0.5)
        rec.experiment_started("exp", {"num_samples": 2}, [])
        ...
        missing = rec.close(timeout=120)   # [] when everything was recorded
    """

    def __init__(self, api_url: Optional[str] = None, window: float = 1.0,
                 max_in_flight: int = 1, server_env: Optional[Dict[str, str]] = None,
                 startup_timeout: int = 120, caller: Optional[CallerRun] = None,
                 progress: Optional[Callable[[str], None]] = None):
        super().__init__()
        if caller is not None and api_url is not None and api_url != caller.api_url:
            raise ValueError(f"api_url={api_url!r} differs from the caller's run's API "
                             f"{caller.api_url!r}: a nested experiment records through its "
                             "caller's API; pass one of them")
        self.window = float(window)
        self.max_in_flight = max(1, int(max_in_flight))
        self.stats.update({
            "writes_failed": 0, "by_kind": {}, "events": 0, "max_lag_s": 0.0,
            "server_startup_s": None, "drain_s": None,
        })
        self._caller = caller
        self._progress = progress or (lambda text: log.warning("%s", text))
        self._server = ServerHandle(None if caller else api_url, extra_env=server_env,
                                    startup_timeout=startup_timeout, caller=caller).start()
        self._done = threading.Event()
        self._abort = False
        self._errors: List[str] = []
        self._record: Optional[ExperimentRecord] = None
        self._writes = None
        self._name: Optional[str] = None
        self._dropped: Counter = Counter()   # events not processed (kind -> count)
        self._dropped_trials: Dict[str, None] = {}   # (some) trials they named
        self._unrecorded_events = 0   # iteration task runs sent as events, not stored
        self._cancel = CancelWatch()
        self._wanted: set = set()   # trials whose run was asked for (ExperimentRecord's)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread = threading.Thread(target=self._thread_main, name=_THREAD_NAME,
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def api_url(self) -> Optional[str]:
        return self._server.api_url if self._server.ready else None

    @property
    def embedded(self) -> bool:
        """Records go to tunelib's embedded server (no UI; stopped when unused)."""
        return self._server.embedded

    @property
    def experiment_flow_run_id(self) -> Optional[str]:
        return self._record.experiment_flow_run_id if self._record else None

    def trial_flow_run_id(self, trial_id: str) -> Optional[str]:
        return self._record.trial_flow_run_id(trial_id) if self._record else None

    def run_context(self, trial_id: Optional[str] = None,
                    want: bool = True) -> Optional[RunContext]:
        """The run of the trial (None: of the experiment) once it exists. ``want``: a trial
        run not created yet is needed now (a trainable using Prefect waits for it), so a
        trial whose start waits to be written whole is written at once (``want_run``)."""
        api_url = self.api_url
        run = (self.experiment_flow_run_id if trial_id is None
               else self.trial_flow_run_id(trial_id))
        if run is None and trial_id is not None and want:
            self.want_run(trial_id)
        return RunContext(api_url, run) if api_url and run else None

    def want_run(self, trial_id: str) -> None:
        """The trial's run is needed now: write its start without waiting (any thread)."""
        self._wanted.add(trial_id)

    def watch_cancel(self, callback: CancelCallback) -> None:
        """Call ``callback(None)`` once when the experiment's run is set Cancelling (or
        Cancelled) in Prefect, ``callback(trial_id)`` once when a trial's run is (see
        ``_cancel_watch``); called from the writer thread."""
        self._cancel.set_callback(callback)

    def close(self, timeout: float) -> List[str]:
        """Drain: return once every write is acknowledged, then stop the embedded server.
        Returns what was not recorded (empty when all was): a short summary when the
        server is gone (no write acknowledged for 3 s and /health silent) or ``timeout``
        s passed - close() does not wait for a dead server."""
        t0 = time.monotonic()
        self._put(_CLOSE)
        reason = self._wait_drained(t0, timeout)
        if reason is not None:
            self._abort = True
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(lambda: None)
                except RuntimeError:
                    pass
            self._done.wait(2.0)
        missing = self._missing(reason)
        self.stats["drain_s"] = round(time.monotonic() - t0, 3)
        self.stats["server_startup_s"] = self._server.startup_seconds
        try:
            self._server.stop()
        except Exception as exc:  # pragma: no cover
            missing.append(f"stopping the embedded Prefect server failed: {exc}")
        return missing

    # ------------------------------------------------------------------ draining
    def _wait_drained(self, t0: float, timeout: float) -> Optional[str]:
        """Wait for the writer; None when it drained, else why close() stops waiting."""
        said = False
        last_probe = 0.0
        while not self._done.wait(0.1):
            now = time.monotonic()
            if now - t0 >= timeout:
                return f"Prefect recording did not finish within {timeout:g} s"
            if not said and now - t0 >= SAY_WAITING_AFTER_S:
                said = True
                self._progress(self._waiting_text())
            writes = self._writes
            if (writes is not None and now - writes.last_ack >= SILENT_SERVER_S
                    and now - last_probe >= 1.0):
                last_probe = now
                if not self._alive():
                    return f"{self._server_words()} stopped answering"
        return None

    def _alive(self) -> bool:
        alive = getattr(self._server, "alive", None)
        if alive is not None:
            return bool(alive(timeout=1.0))
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self._server.api_url}/health", timeout=1.0) as r:
                return r.status == 200
        except Exception:
            return False

    def _server_words(self) -> str:
        describe = getattr(self._server, "describe", None)
        if describe is not None:
            return describe()
        kind = "the embedded Prefect server" if self._server.embedded else "the Prefect API"
        return f"{kind} at {self._server.api_url}"

    def _waiting_text(self) -> str:
        n = (self._record.outstanding() if self._record is not None else 0) + self._q.qsize()
        name = f" of experiment {self._name}" if self._name else ""
        return (f"waiting for Prefect to record {n} writes{name} "
                f"({self._server.api_url or 'starting'})...")

    # ------------------------------------------------------------------ accounting
    def _missing(self, reason: Optional[str]) -> List[str]:
        """What is not recorded: empty, or a compact summary (a headline naming why and
        counts by kind, then at most a few lines per trial and the write errors)."""
        try:
            self._count_rest()
            record = self._record
            if self._server.error is not None:
                error = str(self._server.error).strip().splitlines() or ["?"]
                reason = f"{self._server_words()} could not be reached ({error[0]})"
            elif record is not None and record.gone and reason is None:
                reason = f"{self._server_words()} stopped answering ({record.gone})"
            counts, detail = (record.unrecorded_counts() if record is not None
                              else (Counter(), []))
            counts.update({f"{k} events": v for k, v in self._dropped.items()})
            lost_events = ([f"{self._unrecorded_events} iteration task runs not recorded "
                            f"(sent as events; not stored by the server's task-run "
                            f"recorder {EVENTS_INGEST_WAIT_S:g} s after the last write)"]
                           if self._unrecorded_events else [])
            if reason is None and not counts and not self._errors:
                return lost_events
            head = reason or "some Prefect writes failed"
            what = ", ".join(f"{v} {k}" for k, v in counts.most_common() if v)
            out = [f"{head}; not recorded: {what or 'nothing pending'}"]
            if self._dropped_trials:
                out.append("trials started and not recorded: "
                           + ", ".join(self._dropped_trials)
                           + (" ..." if self._dropped["trial_started"] > MAX_DETAIL_LINES
                              else ""))
            out.extend(detail[:MAX_DETAIL_LINES])
            if len(detail) > MAX_DETAIL_LINES:
                out.append(f"... and {len(detail) - MAX_DETAIL_LINES} more trials")
            out.extend(self._errors)
            return out + lost_events
        except Exception as exc:  # pragma: no cover
            return [f"(could not list what is missing: {exc})"]

    def _count_rest(self) -> bool:
        """Take the queued events without recording them (counted in ``_dropped``); True
        when close() was among them."""
        closing = False
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return closing
            if item is _CLOSE:
                closing = True
            else:
                self._drop(item)

    def _drop(self, item: tuple) -> None:
        """Count an event that will not be recorded (and the trial it starts)."""
        self._dropped[item[0]] += 1
        if item[0] == "trial_started" and len(self._dropped_trials) < MAX_DETAIL_LINES:
            self._dropped_trials[item[2][1]] = None

    # ------------------------------------------------------------------ writer thread
    def _thread_main(self) -> None:
        quiet = _OtherThreadsOnly()
        loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
        for logger in loggers:
            logger.addFilter(quiet)
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - reported by close()
            self._errors.append(f"recorder stopped: {type(exc).__name__}: {exc}")
            log.exception("Prefect recorder stopped")
        finally:
            for logger in loggers:
                logger.removeFilter(quiet)
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        # wait for the API while events pile up in the queue
        while not self._server.booted:
            if self._abort:
                return
            await asyncio.sleep(0.05)
        if self._server.error is not None:
            # drain the queue until close so nothing grows without bound
            while True:
                item = self._q.get()
                if item is _CLOSE:
                    self._count_rest()
                    return
                self._drop(item)

        from prefect.client.orchestration import PrefectClient

        from tunelib.prefect._writes import PrefectWrites, count_503s

        hooks = {"event_hooks": {"response": [count_503s(self.stats)]}}
        async with PrefectClient(api=self._server.api_url, httpx_settings=hooks) as client:
            self._writes = PrefectWrites(client, self.stats, self.max_in_flight,
                                         api_url=self._server.api_url)
            await self._writes.probe_bulk()
            self._record = ExperimentRecord(self._writes, self.stats, self._errors,
                                            caller=self._caller, wanted=self._wanted)
            try:
                await self._dispatch(self._record, client)
            finally:
                await self._writes.close_events()
            if not self._abort and not self._record.gone:
                await self._check_events(self._writes)

    async def _check_events(self, writes) -> None:
        """Count the iteration task runs sent as events the server has not stored."""
        try:
            missing = await writes.unrecorded_event_task_runs(EVENTS_INGEST_WAIT_S)
        except Exception as exc:
            self._errors.append("could not read back the iteration task runs sent as "
                                f"events: {type(exc).__name__}: {exc}")
            return
        self._unrecorded_events = len(missing)

    async def _dispatch(self, record: ExperimentRecord, client) -> None:
        closing = abandoned = False
        poll: Optional[asyncio.Task] = None
        get = self._q.get_nowait
        while not self._abort:
            if record.gone:  # the server is gone: count the rest, write nothing more
                if not abandoned:
                    abandoned = True
                    record.abandon()
                closing = self._count_rest() or closing
                if closing:
                    return
                await asyncio.sleep(0.05)
                continue
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
                    self._handle(record, *item)
                except Exception as exc:  # bad event: report, keep going
                    self._errors.append(f"event {item[0]} could not be recorded: {exc!r}")
            record.flush_due(self.window, closing)
            if (not record.finishing and (poll is None or poll.done())
                    and self._cancel.due()):
                poll = asyncio.ensure_future(self._poll_cancel(record, client))
            if closing and record.idle():
                return
            await asyncio.sleep(0.005 if got else 0.02)
        record.cancel()  # aborted: cancel what is outstanding

    async def _poll_cancel(self, record: ExperimentRecord, client) -> None:
        ids = self._cancel.ids_to_poll(record.experiment_flow_run_id, record.live_trial_runs())
        if not ids:
            return
        try:
            hits = await cancelled_runs(client, ids)
        except Exception as exc:  # a failed poll is retried at the next one
            log.debug("polling Prefect for cancelled runs failed: %s", exc)
            return
        self._cancel.notify(hits, ids)

    def _handle(self, record: ExperimentRecord, kind: str, t: float, args: tuple) -> None:
        self.stats["events"] += 1
        if kind == "trial_result":
            record.trial_result(t, *args)
        elif kind == "trial_finished":
            trial_id, status, message = args
            record.trial_finished(t, trial_id, TrialOutcome(status), message)
        elif kind == "experiment_finished":
            status, rows = args
            record.experiment_finished(t, ExperimentOutcome(status), rows)
        elif kind in _PLAIN_EVENTS:
            if kind == "experiment_started":
                self._name = args[0]
            getattr(record, kind)(t, *args)
        else:
            raise ValueError(f"unknown event kind {kind!r}")


class _OtherThreadsOnly(logging.Filter):
    """Drops the records the writer thread logs through Prefect's and httpx's loggers: a
    dead server would repeat one error per request; the recorder says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != _THREAD_NAME
