"""The Prefect-workers executor: trials run as deployment runs on ``prefect worker`` processes.

Scale-out: any number of ``prefect worker start --pool tunelib`` processes, on any machines
that see the experiment's storage, execute the ``trial`` flow (``flows/trial.py``) as
deployment runs. The driver never talks to a worker; everything goes through two places:

* **storage** (shared by driver and workers, a directory or ``s3://``)::

      <experiment>/.tunelib/trainable.pkl     the cloudpickled trainable, written once
      <trial>/.tunelib/spec.pkl               the attempt to run: (flow run id, seq, TrialSpec)
      <trial>/.tunelib/control.json           the driver's decision: {"seq", "decision"}
      <trial>/.tunelib/outcome.json           how an attempt ended: done | paused | error
      <trial>/.tunelib/heartbeat.json         a counter the running attempt bumps
      <trial>/result.json                     results, as always; the driver tails it

* **the Prefect API**: the driver creates one flow run per trial (``run_deployment``-style,
  returning at once), sets its retries to the failures the trial has left, and looks at the
  runs' states every ``state_poll_s`` seconds to notice a run whose process died (CRASHED).
  A machine that vanishes leaves its run RUNNING for ever, so a running attempt also bumps
  a heartbeat record on storage; one silent for ``heartbeat_timeout_s`` is marked CRASHED.

Decisions are asynchronous: ``report()`` never waits for the driver; it reads the control
record and unwinds the trainable once a STOP or PAUSE is there (the driver writes it within
a poll, so a trial reporting at least once a second stops within about a second). A trial
may therefore run a few iterations past the one a scheduler stopped it at; FIFO runs are
identical to the local executor's. ``PrefectWorkers(sync_decisions=True)`` makes every
``report()`` wait for the driver's answer (``answered`` in the control record), as locally.

Failures: a trainable that raises fails the attempt; Prefect retries the flow run in place
(``retries`` = the failures left), and the retried attempt waits for the controller's next
spec (restore checkpoint, iteration counters). A flow run whose process was killed goes
CRASHED; the driver reports an error and the retry is a new deployment run, picked up by
whichever worker is free.

Example::

    from tunelib import tune
    from tunelib.executor.prefect_workers import PrefectWorkers

    tuner = tune.Tuner(train_fn, param_space=space,
                       run_config=tune.RunConfig(storage_path="/shared/results",
                                                 executor=PrefectWorkers()))
    tuner.fit()
"""


from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from tunelib._layout import to_json_value
from tunelib._lifecycle import Decision
from tunelib.executor._storage_channel import (
    _FINAL_TYPES,
    _UNLIMITED_RETRIES,
    CHECKPOINTS_FILE,
    CONTROL_DIR,
    CONTROL_FILE,
    HEARTBEAT_FILE,
    OUTCOME_FILE,
    SPEC_FILE,
    TRAINABLE_FILE,
    TrialAttemptFailed,
    _control_path,
    _fresh,
    _read_json,
    _Tail,
    _write_atomic,
)
from tunelib.executor.base import CheckpointRecord, EventKind, TrialEvent, TrialSpec


class PrefectWorkersError(RuntimeError):
    """The Prefect side of the scale-out executor is not usable (no server, pool, deployment)."""


@dataclass
class PrefectWorkers:
    """Run trials as deployment runs on Prefect workers (``RunConfig(executor=...)``).

    Args:
        deployment: ``<flow name>/<deployment name>`` of the deployed trial flow
            (``python deployments/deploy.py`` creates ``trial/tunelib-trial``).
        work_pool: the work pool the deployment must belong to.
        max_concurrent: trials in flight at once (default: what the runner computed from
            ``max_concurrent_trials`` and the number of samples).
        api_url: the Prefect API (default: ``PREFECT_API_URL``).
        poll_interval_s: how often the driver looks at storage for new results.
        state_poll_s: how often it asks the API for the trial flow runs' states.
        connect_attempts: tries (with doubling back-off from 0.5 s) before a Prefect API
            that does not answer is an error.
        spec_timeout_s: how long a started trial flow run waits for its attempt's spec.
        heartbeat_s: how often a running trial touches its heartbeat record on storage.
        heartbeat_timeout_s: a RUNNING trial flow run whose heartbeat has not changed for
            this long is dead (its machine went away without Prefect noticing): the driver
            marks it CRASHED and retries the trial elsewhere.
        start_timeout_s: the same for a run a worker claimed whose process never beat
            (a worker-launched run needs ~13 s to start on 2 busy cores).
        sync_decisions: make each ``report()`` wait for the driver's decision on it, as the
            local executor does: schedulers and stoppers then act at exactly the iteration
            they decide on, at the cost of a storage round trip per result (~0.1 s locally).
    """

    deployment: str = "trial/tunelib-trial"
    work_pool: str = "tunelib"
    max_concurrent: Optional[int] = None
    api_url: Optional[str] = None
    poll_interval_s: float = 0.05
    state_poll_s: float = 2.0
    connect_attempts: int = 6
    spec_timeout_s: float = 600.0
    heartbeat_s: float = 2.0
    heartbeat_timeout_s: float = 30.0
    start_timeout_s: float = 180.0
    sync_decisions: bool = False

    def create_executor(self, spec, num_workers: int, payload: bytes) -> "PrefectWorkersExecutor":
        if "/" not in self.deployment:
            raise ValueError(
                f"`deployment` must be '<flow name>/<deployment name>', e.g. 'trial/tunelib-trial', "
                f"got {self.deployment!r}."
            )
        return PrefectWorkersExecutor(self, spec, self.max_concurrent or num_workers)



# --------------------------------------------------------------------------- driver side


class _Run:
    """One trial as the driver sees it: its flow run, attempt number and result tail."""

    def __init__(self, spec: TrialSpec, tail: _Tail):
        self.trial_id = spec.trial_id
        self.spec = spec
        self.tail = tail
        self.flow_run_id: Optional[str] = None
        self.seq = 0
        self.retries_left = 0        # Prefect retries left on the current flow run
        self.active = False          # an attempt is running (a slot is taken)
        self.in_place_retry = False  # the flow run fails over to its next attempt itself
        self.decision: Optional[str] = None
        self.answered = 0            # results of this attempt handed to the controller
        self.queued: List[dict] = []
        self.state_type: Optional[str] = None
        self.state_message: str = ""
        self.heartbeat: Optional[str] = None
        self.alive_at: Optional[float] = None   # driver's clock when last seen alive


class PrefectWorkersExecutor:
    """The executor interface (tunelib.executor.base) over Prefect deployment runs."""

    def __init__(self, config: PrefectWorkers, experiment, capacity: int):
        from tunelib import storage

        if capacity < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {capacity}")
        if storage.is_process_local(experiment.fs):
            raise ValueError(
                "`storage_path` must be storage every Prefect worker can see (a shared "
                f"directory or s3://...), not {experiment.experiment_uri!r}."
            )
        self.config = config
        self.experiment = experiment
        self._capacity = capacity
        self._fs = experiment.fs
        self._runs: Dict[str, _Run] = {}
        self._client = None
        self._deployment_id = None
        self._api_url: Optional[str] = None
        self._last_state_poll = 0.0
        self._trainable_written: set = set()

    # ------------------------------------------------------------------ Prefect API
    def _api(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call the API; retry a server that does not answer, with doubling back-off."""
        import httpx

        delay = 0.5
        for attempt in range(1, max(1, self.config.connect_attempts) + 1):
            try:
                return fn()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                    httpx.RemoteProtocolError) as exc:
                if attempt >= self.config.connect_attempts:
                    raise PrefectWorkersError(
                        f"The Prefect API at {self._api_url} did not answer ({what}) after "
                        f"{attempt} attempts: {exc!r}. Start it with `prefect server start "
                        "--host 127.0.0.1 --port 4200` and set PREFECT_API_URL (see "
                        "deployments/README.md)."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def _connect(self) -> None:
        from prefect.client.orchestration import SyncPrefectClient

        self._api_url = self.config.api_url or os.environ.get("PREFECT_API_URL")
        if not self._api_url:
            from prefect.settings import get_current_settings

            self._api_url = get_current_settings().api.url
        if not self._api_url:
            raise PrefectWorkersError(
                "PrefectWorkers needs a Prefect server that workers share: set PREFECT_API_URL "
                "(e.g. http://127.0.0.1:4200/api) or PrefectWorkers(api_url=...). See "
                "deployments/README.md."
            )
        self._client = SyncPrefectClient(self._api_url)
        self._client.__enter__()
        self._api("connecting", self._healthcheck)

    def _healthcheck(self) -> None:
        error = self._client.api_healthcheck()
        if error is not None:
            raise error

    def _check_pool_and_deployment(self) -> None:
        from prefect.exceptions import ObjectNotFound

        pool = self.config.work_pool
        try:
            self._api("reading the work pool", lambda: self._client.read_work_pool(pool))
        except ObjectNotFound:
            raise PrefectWorkersError(
                f"The Prefect work pool {pool!r} does not exist. Create it with "
                f"`prefect work-pool create {pool} --type process`, then deploy the trial flow "
                f"with `python deployments/deploy.py --pool {pool}`."
            ) from None
        name = self.config.deployment
        try:
            deployment = self._api("reading the deployment",
                                   lambda: self._client.read_deployment_by_name(name))
        except ObjectNotFound:
            raise PrefectWorkersError(
                f"The deployment {name!r} does not exist. Create it with `python "
                f"deployments/deploy.py --pool {pool} --name {name.split('/', 1)[1]}` "
                "(or `prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all`)."
            ) from None
        if deployment.work_pool_name != pool:
            raise PrefectWorkersError(
                f"The deployment {name!r} belongs to work pool {deployment.work_pool_name!r}, "
                f"not {pool!r}: pass PrefectWorkers(work_pool={deployment.work_pool_name!r}) or "
                f"redeploy with `python deployments/deploy.py --pool {pool}`."
            )
        self._deployment_id = deployment.id

    # ------------------------------------------------------------------ lifecycle
    @property
    def capacity(self) -> int:
        return self._capacity

    def start(self) -> None:
        self._connect()
        self._check_pool_and_deployment()

    def has_free_slot(self) -> bool:
        return sum(1 for r in self._runs.values() if r.active) < self._capacity

    def register_trainable(self, key: str, payload: bytes) -> None:
        import cloudpickle

        if key in self._trainable_written:
            return
        record = {
            "key": key,
            "payload": payload,
            # trainables pickled by reference need the driver's import paths (same machine
            # or same checkout layout elsewhere)
            "sys_path": [os.getcwd()] + [p for p in sys.path if p],
        }
        path = f"{self.experiment.experiment_path}/{CONTROL_DIR}/{TRAINABLE_FILE}"
        _write_atomic(self._fs, path, cloudpickle.dumps(record))
        self._trainable_written.add(key)

    def start_trial(self, spec: TrialSpec) -> None:
        import cloudpickle

        run = self._runs.get(spec.trial_id)
        if run is None:
            run = self._runs[spec.trial_id] = _Run(
                spec, _Tail(self._fs, f"{spec.trial_path}/result.json"))
        run.spec = spec
        run.seq += 1
        run.decision = None
        run.answered = 0
        run.queued = []
        run.active = True
        run.alive_at = None
        if not run.in_place_retry or run.flow_run_id is None:
            self._submit(run)
        run.in_place_retry = False
        _write_atomic(self._fs, _control_path(spec.trial_path, CONTROL_FILE),
                      json.dumps({"seq": run.seq, "decision": Decision.CONTINUE}).encode())
        _write_atomic(self._fs, _control_path(spec.trial_path, SPEC_FILE), cloudpickle.dumps(
            {"flow_run_id": run.flow_run_id, "seq": run.seq, "spec": spec}))

    def _submit(self, run: _Run) -> None:
        """A new flow run of the trial deployment, as run_deployment(..., timeout=0) makes."""
        from prefect.client.schemas.objects import FlowRunPolicy

        spec = run.spec
        max_failures = self.experiment.max_failures
        if max_failures < 0:
            retries = _UNLIMITED_RETRIES
        else:
            retries = max(0, max_failures - spec.failure_number)
        parameters = {
            "config": to_json_value(spec.config),
            "tunelib": {
                "experiment_uri": spec.experiment_uri,
                "experiment_path": self.experiment.experiment_path,
                "trial_path": spec.trial_path,
                "trial_id": spec.trial_id,
                "spec_timeout_s": self.config.spec_timeout_s,
                "heartbeat_s": self.config.heartbeat_s,
                "sync_decisions": self.config.sync_decisions,
            },
        }
        flow_run = self._api("creating the trial's flow run", lambda: (
            self._client.create_flow_run_from_deployment(
                self._deployment_id, parameters=parameters, name=spec.trial_name,
                tags=[spec.experiment_name, spec.trial_id],
                idempotency_key=f"tunelib-{spec.trial_id}-{uuid.uuid4().hex}",
            )))
        # max_failures is per trial, Prefect's retries per flow run: give this run what is left
        self._api("setting the trial's retries", lambda: self._client.update_flow_run(
            flow_run.id, empirical_policy=FlowRunPolicy(retries=retries, retry_delay=0)))
        run.flow_run_id = str(flow_run.id)
        run.retries_left = retries
        run.state_type = None
        run.alive_at = None
        try:
            from flows.recorder import register_external_trial_run

            register_external_trial_run(spec.trial_id, run.flow_run_id)
        except ImportError:  # flows/ not importable: nothing records the run
            pass

    def decide(self, trial_id: str, decision: Decision) -> None:
        run = self._runs.get(trial_id)
        if run is None or run.decision is not None:
            return
        if decision == Decision.CONTINUE and not self.config.sync_decisions:
            return
        record = {"seq": run.seq, "decision": decision, "answered": run.answered}
        if decision != Decision.CONTINUE:
            run.decision = decision
            run.queued = []  # results the trial reported after this one are past the decision
        _write_atomic(self._fs, _control_path(run.spec.trial_path, CONTROL_FILE),
                      json.dumps(record).encode())

    def kill_trial(self, trial_id: str) -> None:
        run = self._runs.get(trial_id)
        if run is None or not run.active:
            return
        run.active = False
        run.in_place_retry = False
        _write_atomic(self._fs, _control_path(run.spec.trial_path, CONTROL_FILE),
                      json.dumps({"seq": run.seq, "decision": Decision.STOP}).encode())
        self._cancel(run)

    def _cancel(self, run: _Run) -> None:
        from prefect.states import Cancelling

        if run.flow_run_id is None or run.state_type in _FINAL_TYPES:
            return
        try:  # the worker owning the process kills it
            self._api("cancelling a trial's flow run", lambda: self._client.set_flow_run_state(
                run.flow_run_id, Cancelling(message="stopped by tunelib"), force=True))
        except Exception:  # shutting down: best effort
            pass

    def shutdown(self) -> None:
        for run in self._runs.values():
            if run.active or run.in_place_retry:
                run.active = False
                self._cancel(run)
        if self._client is not None:
            try:
                self._client.__exit__(None, None, None)
            except Exception:
                pass
            self._client = None

    # ------------------------------------------------------------------ events
    def poll(self, timeout: float) -> List[TrialEvent]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            events = self._collect()
            if events or time.monotonic() >= deadline:
                return events
            time.sleep(min(self.config.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def _collect(self) -> List[TrialEvent]:
        events: List[TrialEvent] = []
        active = [r for r in self._runs.values() if r.active]
        if not active:
            return events
        if time.monotonic() - self._last_state_poll >= self.config.state_poll_s:
            self._poll_states(active)
        for run in active:
            event = self._next_event(run)
            if event is not None:
                events.append(event)
        return events

    def _next_event(self, run: _Run) -> Optional[TrialEvent]:
        if run.decision is None:
            for line in run.tail.read_lines():
                try:
                    run.queued.append(json.loads(line))
                except ValueError:
                    continue
            if run.queued:  # one result at a time: the controller answers each
                result = run.queued.pop(0)
                run.answered += 1
                return TrialEvent(EventKind.RESULT, run.trial_id, result=result,
                                  checkpoint=self._checkpoint_of(run, result))
        else:
            run.tail.read_lines()  # past the decision: skipped
        outcome = _read_json(self._fs, _control_path(run.spec.trial_path, OUTCOME_FILE))
        if outcome and outcome.get("flow_run_id") == run.flow_run_id and outcome.get("seq") == run.seq:
            if run.decision is None and run.tail.grew():
                return None  # results written just before the end come first
            return self._finish_attempt(run, outcome)
        if run.state_type in _FINAL_TYPES:
            # the flow run ended without an outcome for this attempt: its process died
            if run.decision is None and run.tail.grew():
                return None
            run.active = False
            run.in_place_retry = False
            text = (
                f"The Prefect flow run {run.flow_run_id} of trial {run.trial_id} ended "
                f"{run.state_type} before the trial finished ({run.state_message or 'no message'}):"
                " its worker or process died."
            )
            return TrialEvent(EventKind.ERROR, run.trial_id, error_text=text, error=None)
        return None

    def _checkpoint_of(self, run: _Run, result: dict) -> Optional[CheckpointRecord]:
        """The trial's retention record for a result that names a checkpoint (written by
        the trial before that result; it may already be a later one's)."""
        name = result.get("checkpoint_dir_name")
        if not name:
            return None
        record = _read_json(self._fs, _control_path(run.spec.trial_path, CHECKPOINTS_FILE))
        if not record:
            return CheckpointRecord(name, (name,), run.spec.next_checkpoint_index)
        return CheckpointRecord(name, tuple(record["kept"]), int(record["next_index"]))

    def _finish_attempt(self, run: _Run, outcome: dict) -> TrialEvent:
        run.active = False
        kind = EventKind(outcome.get("kind", EventKind.ERROR))
        if kind is EventKind.ERROR:
            # Prefect retries the flow run in place while it has retries left
            run.in_place_retry = run.retries_left > 0
            run.retries_left -= 1
            text = outcome.get("error_text") or "the trial failed"
            # error.txt is written by the trial itself; an exception here says so
            return TrialEvent(EventKind.ERROR, run.trial_id, error_text=text,
                              error=TrialAttemptFailed(text.strip().splitlines()[-1]))
        saved = outcome.get("checkpoint")
        checkpoint = None if not saved else CheckpointRecord(
            saved["name"], tuple(saved["kept"]), int(saved["next_index"]))
        return TrialEvent(kind, run.trial_id, checkpoint=checkpoint)

    def _poll_states(self, active: List[_Run]) -> None:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        self._last_state_poll = time.monotonic()
        ids = [uuid.UUID(r.flow_run_id) for r in active if r.flow_run_id]
        if not ids:
            return
        flow_runs = self._api("reading the trials' flow run states", lambda: (
            self._client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))))
        by_id = {str(fr.id): fr for fr in flow_runs}
        now = time.monotonic()
        for run in active:
            fr = by_id.get(run.flow_run_id)
            if fr is not None and fr.state is not None:
                run.state_type = fr.state.type.value
                run.state_message = fr.state.message or ""
            if run.state_type not in ("PENDING", "RUNNING"):  # queued or over: no clock
                run.alive_at = None
                continue
            beat = self._read_heartbeat(run)
            ours = bool(beat) and beat.startswith(f"{run.flow_run_id}:")
            if run.alive_at is None or (ours and beat != run.heartbeat):
                run.heartbeat, run.alive_at = beat, now
                continue
            # a worker claimed the run (PENDING) or its engine started it (RUNNING): a
            # process must start, then beat; silence past the limit means it is gone
            limit = self.config.heartbeat_timeout_s if ours else self.config.start_timeout_s
            if now - run.alive_at > limit:
                self._mark_crashed(run, now - run.alive_at)

    def _read_heartbeat(self, run: _Run) -> Optional[str]:
        from tunelib import storage

        path = _control_path(run.spec.trial_path, HEARTBEAT_FILE)
        _fresh(self._fs, path)
        try:
            return storage.read_text(self._fs, path)
        except (FileNotFoundError, OSError):
            return None

    def _mark_crashed(self, run: _Run, silent_s: float) -> None:
        from prefect.states import Crashed

        message = (f"tunelib: no heartbeat from the trial for {silent_s:.0f} s: its worker or "
                   "machine is gone")
        try:
            self._api("marking a dead trial's flow run crashed",
                      lambda: self._client.set_flow_run_state(
                          run.flow_run_id, Crashed(message=message), force=True))
        except Exception:  # the error event below is what matters
            pass
        run.state_type, run.state_message = "CRASHED", message
