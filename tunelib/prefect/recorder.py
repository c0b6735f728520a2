"""PrefectRecorder: the ONE writer of an experiment's Prefect records.

The controller's thread only enqueues events (``tunelib.recording.QueueRecorder``). A
background thread running its own asyncio loop and a single ``PrefectClient`` turns them
into REST writes (acknowledged: a write is recorded when its response arrives):

* experiment_started  -> flow run of flow ``experiment`` created in Running, named after the
                         experiment, tagged with it (+ the flow itself once per flow name)
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
* experiment_finished -> the final leaderboard, progress and learning-curve artifacts on
                         the experiment run, then its final state.

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
event happened. Iteration task runs carry their real time span in the message.

``stats`` holds counts: writes, writes_failed, retries_503 (503 answers, each retried by
the client), seconds_busy, by_kind (kind -> [count, ms]), events, max_lag_s, drain_s.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Dict, List, Optional

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome
from tunelib.prefect._record import ExperimentRecord
from tunelib.prefect.server import ServerHandle
from tunelib.recording import QueueRecorder

log = logging.getLogger("tunelib.recorder")

_CLOSE = ("__close__", 0.0, None)
# events passed to ExperimentRecord's method of the same name as they are
_PLAIN_EVENTS = frozenset({"experiment_started", "trial_attached", "trial_started",
                           "trial_failed", "trial_paused"})


class PrefectRecorder(QueueRecorder):
    """Records an experiment in Prefect from one background writer thread.

    Args:
        api_url: the Prefect API to use; default: PREFECT_API_URL (env/profile) or an
            embedded server started for this experiment (stopped at close()).
        window: seconds a trial's results may wait to be coalesced into one task run.
        max_in_flight: requests the writer keeps in flight at once (different runs only;
            each run's writes stay in order). 1 = strictly sequential.
        server_env: environment for an embedded server (default:
            ``tunelib.prefect.server.EMBEDDED_SERVER_ENV``); ``{}`` = Prefect's defaults.

    Example::

        rec = PrefectRecorder(window=0.5)
        rec.experiment_started("exp", {"num_samples": 2}, [])
        ...
        missing = rec.close(timeout=120)   # [] when everything was recorded
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
        self._record: Optional[ExperimentRecord] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread = threading.Thread(target=self._thread_main, name="tunelib-prefect-recorder",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def api_url(self) -> Optional[str]:
        return self._server.api_url if self._server.ready else None

    @property
    def experiment_flow_run_id(self) -> Optional[str]:
        return self._record.experiment_flow_run_id if self._record else None

    def trial_flow_run_id(self, trial_id: str) -> Optional[str]:
        return self._record.trial_flow_run_id(trial_id) if self._record else None

    def close(self, timeout: float) -> List[str]:
        """Drain: return once every write is acknowledged (or ``timeout`` s passed), then
        stop the embedded server. Returns what was not recorded (empty when all was)."""
        t0 = time.monotonic()
        self._put(_CLOSE)
        finished = self._done.wait(timeout)
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
        """What is not recorded yet: unprocessed events, unacknowledged writes, errors."""
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
            if self._record is not None:
                out.extend(self._record.unrecorded())
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
        while not self._server.booted:
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

        from tunelib.prefect._writes import PrefectWrites, count_503s

        hooks = {"event_hooks": {"response": [count_503s(self.stats)]}}
        async with PrefectClient(api=self._server.api_url, httpx_settings=hooks) as client:
            writes = PrefectWrites(client, self.stats, self.max_in_flight)
            self._record = ExperimentRecord(writes, self.stats, self._errors)
            await self._dispatch(self._record)

    async def _dispatch(self, record: ExperimentRecord) -> None:
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
                    self._handle(record, *item)
                except Exception as exc:  # bad event: report, keep going
                    self._errors.append(f"event {item[0]} could not be recorded: {exc!r}")
            record.flush_due(self.window, closing)
            if closing and record.idle():
                return
            await asyncio.sleep(0.005 if got else 0.02)
        record.cancel()  # aborted: cancel what is outstanding

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
            getattr(record, kind)(t, *args)
        else:
            raise ValueError(f"unknown event kind {kind!r}")
