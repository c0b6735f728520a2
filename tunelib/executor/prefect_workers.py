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

* **the Prefect API** (every call in ``tunelib.prefect.workers_api``): the driver creates one
  flow run per trial (``run_deployment``-style, returning at once) as a child of the
  experiment's flow run (through a stand-in task run in it, as Prefect's engine links a
  subflow; the recorder creates the experiment's run, ``Recorder.run_context(None)``), sets
  its retries to the failures the trial has left, tells the recorder which run it is
  (``trial_attached``: the recorder adds the iteration task runs to it), and looks at the
  runs' states every
  ``state_poll_s`` seconds to notice a run whose process died (CRASHED). A machine that
  vanishes leaves its run RUNNING for ever, so a running attempt also bumps a heartbeat
  record on storage; one silent for ``heartbeat_timeout_s`` is marked CRASHED.

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

Cancel: a trial's flow run cancelled in Prefect (UI, CLI; its worker kills the process, the
run ends CANCELLED) ends that trial, neither retried nor counted as a failure: the driver
reports a ``DONE`` event whose ``error`` is a :class:`TrialRunCancelled` (the controller
records the trial as cancelled). The driver's own ``kill_trial`` and ``shutdown`` cancel the
runs they end the same way.

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
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

from tunelib._layout import to_json_value
from tunelib._lifecycle import Decision
from tunelib.executor._storage_channel import (
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
from tunelib.executor.base import (
    CheckpointRecord,
    EventKind,
    TrialEvent,
    TrialRunCancelled,
    TrialSpec,
)
from tunelib.prefect.workers_api import PrefectWorkersError  # imports no Prefect
from tunelib.recording import NullRecorder, Recorder, RunContext

if TYPE_CHECKING:
    from tunelib.prefect.workers_api import RunState, WorkersAPI

__all__ = ["PrefectWorkers", "PrefectWorkersError", "PrefectWorkersExecutor",
           "TrialRunCancelled"]

logger = logging.getLogger("tunelib")


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
        parent_timeout_s: how long the first trial waits for the recorder to create the
            experiment's flow run (the trial runs' parent); past it, trial runs are created
            without a parent (with a warning).
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
    parent_timeout_s: float = 60.0

    def create_executor(self, spec, num_workers: int, payload: bytes,
                        recorder: Optional[Recorder] = None) -> "PrefectWorkersExecutor":
        """The executor of one experiment; ``recorder`` hears which flow run each trial
        attempt runs in (``trial_attached``)."""
        if "/" not in self.deployment:
            raise ValueError(
                f"`deployment` must be '<flow name>/<deployment name>', e.g. 'trial/tunelib-trial', "
                f"got {self.deployment!r}."
            )
        self._check_api_url()
        return PrefectWorkersExecutor(self, spec, self.max_concurrent or num_workers,
                                      recorder=recorder)

    def _check_api_url(self) -> None:
        """Fail at once, without importing Prefect: with no server that the workers share,
        the driver would wait for an embedded one (≈ 20 s) and then fail, and Prefect
        imported here while the recorder's thread imports it too prints a confusing
        'Failed to initialize plugins: deadlock detected' line first."""
        if self.api_url or os.environ.get("PREFECT_API_URL") or _profile_api_url():
            return
        raise PrefectWorkersError(
            "The Prefect-workers executor needs PREFECT_API_URL set to the Prefect server "
            "that the workers poll (the one `prefect worker start --pool "
            f"{self.work_pool}` was started against): e.g. `export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api` before running the script (or "
            "`prefect config set PREFECT_API_URL=...`), or pass PrefectWorkers(api_url=...). "
            "See deployments/README.md."
        )


def _profile_api_url() -> Optional[str]:
    """PREFECT_API_URL of the active Prefect profile (``prefect config set``), read without
    importing Prefect; None when there is none."""
    import tomllib

    home = os.environ.get("PREFECT_HOME") or os.path.join(os.path.expanduser("~"), ".prefect")
    path = os.environ.get("PREFECT_PROFILES_PATH") or os.path.join(home, "profiles.toml")
    try:
        with open(path, "rb") as f:
            profiles = tomllib.load(f)
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return (profiles.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL") or None


# --------------------------------------------------------------------------- driver side


class _Run:
    """One trial as the driver sees it: its flow run, attempt number and result tail."""

    def __init__(self, spec: TrialSpec, tail: _Tail):
        self.trial_id = spec.trial_id
        self.spec = spec
        self.tail = tail
        self.flow_run_id: Optional[str] = None
        self.parent_task_run_id: Optional[str] = None   # its stand-in in the experiment's run
        self.seq = 0
        self.retries_left = 0        # Prefect retries left on the current flow run
        self.active = False          # an attempt is running (a slot is taken)
        self.in_place_retry = False  # the flow run fails over to its next attempt itself
        self.decision: Optional[str] = None
        self.answered = 0            # results of this attempt handed to the controller
        self.queued: List[dict] = []
        self.state: Optional[RunState] = None   # its flow run's, as last read
        self.heartbeat: Optional[str] = None
        self.alive_at: Optional[float] = None   # driver's clock when last seen alive


class PrefectWorkersExecutor:
    """The executor interface (tunelib.executor.base) over Prefect deployment runs."""

    def __init__(self, config: PrefectWorkers, experiment, capacity: int,
                 recorder: Optional[Recorder] = None):
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
        self._recorder: Recorder = recorder if recorder is not None else NullRecorder()
        self._api: Optional[WorkersAPI] = None   # from start()
        self._last_state_poll = 0.0
        self._trainable_written: set = set()
        self._parent: Optional[RunContext] = None
        self._parent_looked_up = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def capacity(self) -> int:
        return self._capacity

    def start(self) -> None:
        from tunelib.prefect.workers_api import WorkersAPI

        self._api = WorkersAPI(self.config.api_url, self.config.connect_attempts)
        self._api.connect()
        self._api.check_pool_and_deployment(self.config.work_pool, self.config.deployment)

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
        """A new flow run of the trial deployment, with the retries the trial has left."""
        from tunelib.prefect.workers_api import retries_for

        spec = run.spec
        retries = retries_for(self.experiment.max_failures, spec.failure_number)
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
        tags = [spec.experiment_name, spec.trial_id]
        parent = self._experiment_run()
        if parent is not None and run.parent_task_run_id is None:
            run.parent_task_run_id = self._api.create_subflow_task_run(
                parent.flow_run_id, spec.trial_id, spec.trial_name, tags)
        run.flow_run_id = self._api.create_trial_run(
            spec.trial_id, parameters, name=spec.trial_name, tags=tags, retries=retries,
            parent_task_run_id=run.parent_task_run_id)
        run.retries_left = retries
        run.state = None
        run.alive_at = None
        self._recorder.trial_attached(spec.trial_id, run.flow_run_id)

    def _experiment_run(self) -> Optional[RunContext]:
        """The experiment's flow run, the trial runs' parent. The recorder creates it on its
        own thread: the first trial waits for it (``parent_timeout_s``), polling; a run on
        another API than the workers' cannot be a parent. None (warned once) without one."""
        if self._parent_looked_up:
            return self._parent
        self._parent_looked_up = True
        if isinstance(self._recorder, NullRecorder):
            return None  # nothing is recorded: no experiment run to nest under
        deadline = time.monotonic() + self.config.parent_timeout_s
        context = self._recorder.run_context(None)
        while context is None and time.monotonic() < deadline:
            time.sleep(0.05)
            context = self._recorder.run_context(None)
        if context is None:
            logger.warning(
                "The experiment's Prefect flow run was not created within %g s "
                "(PrefectWorkers(parent_timeout_s=...)): its trials' flow runs are created "
                "without it as their parent.", self.config.parent_timeout_s)
        elif context.api_url.rstrip("/") != self._api.api_url.rstrip("/"):
            logger.warning(
                "The experiment is recorded on the Prefect API at %s, its trials run on the "
                "workers' API at %s: the trials' flow runs cannot be its children. Set "
                "PREFECT_API_URL to the workers' API.", context.api_url, self._api.api_url)
            context = None
        self._parent = context
        return context

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
        if run.flow_run_id is None or (run.state is not None and run.state.final):
            return
        self._api.cancel(run.flow_run_id)  # the worker owning the process kills it

    def shutdown(self) -> None:
        for run in self._runs.values():
            if run.active or run.in_place_retry:
                run.active = False
                self._cancel(run)
        if self._api is not None:
            self._api.close()
            self._api = None

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
        if run.state is not None and run.state.final:
            # the flow run ended without an outcome for this attempt: its process died
            if run.decision is None and run.tail.grew():
                return None
            run.active = False
            run.in_place_retry = False
            cancel = self._api.cancel_state(run.flow_run_id)
            if cancel is not None:
                return self._cancelled(run, cancel)
            text = (
                f"The Prefect flow run {run.flow_run_id} of trial {run.trial_id} ended "
                f"{run.state.type} before the trial finished ({run.state.message or 'no message'}):"
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
            # a run cancelled in Prefect: its process was killed while the trainable ran
            cancel = self._api.cancel_state(run.flow_run_id)
            if cancel is not None:
                run.in_place_retry = False
                return self._cancelled(run, cancel)
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

    @staticmethod
    def _cancelled(run: _Run, state: "RunState") -> TrialEvent:
        """The trial's run was cancelled in Prefect: the trial ends, not as a failure."""
        text = (f"The Prefect flow run {run.flow_run_id} of trial {run.trial_id} was cancelled"
                f" ({state.message or state.type}).")
        return TrialEvent(EventKind.DONE, run.trial_id, error_text=text,
                          error=TrialRunCancelled(text))

    def _poll_states(self, active: List[_Run]) -> None:
        self._last_state_poll = time.monotonic()
        ids = [r.flow_run_id for r in active if r.flow_run_id]
        if not ids:
            return
        states = self._api.read_states(ids)
        now = time.monotonic()
        for run in active:
            run.state = states.get(run.flow_run_id, run.state)
            if run.state is None or run.state.type not in ("PENDING", "RUNNING"):
                # queued or over: no clock
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
        message = (f"tunelib: no heartbeat from the trial for {silent_s:.0f} s: its worker or "
                   "machine is gone")
        # best effort: the error event that follows is what matters
        run.state = self._api.mark_crashed(run.flow_run_id, message)
