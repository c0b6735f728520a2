"""The trial side of the Prefect-workers executor: what the ``trial`` flow runs on a
``prefect worker`` (through ``tunelib.prefect.deployed_trial``). It reuses the local
worker's trial runner (``_Worker``) with storage as the channel to the driver (see
``tunelib.executor.prefect_workers``). Imports no Prefect."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any, Dict, Optional

from tunelib._lifecycle import Decision
from tunelib.executor._messages import AttemptEnded, AttemptFailed
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
    _write_atomic,
)
from tunelib.executor.base import CheckpointRecord, EventKind, TrialSpec
from tunelib.executor.worker import _Unloadable, _Worker

_trainables: Dict[str, Any] = {}
_last_seq: Dict[str, int] = {}


class _Outcome:
    """Stands in for the local worker's connection: keeps the attempt's last message."""

    def __init__(self) -> None:
        self.message: Optional[tuple] = None

    def send(self, message: tuple) -> None:
        self.message = message


class _FlowWorker(_Worker):
    """The local worker's trial runner, with the control record as its decision channel."""

    def __init__(self, fs, control_path: str, seq: int, sync: bool = False,
                 sync_timeout_s: float = 600.0):
        super().__init__(_Outcome(), process_local_storage=False)
        self._sync = sync
        self._sync_timeout_s = sync_timeout_s
        self._reported = 0
        self._control_fs = fs
        self._control_path = control_path
        self._seq = seq
        self.decision = Decision.CONTINUE
        from tunelib import storage

        # a local read costs microseconds; an object-store GET milliseconds: poll it at most
        # every 0.25 s, well within "STOP/PAUSE within about a second"
        self._read_every = 0.0 if storage.is_local(fs) else 0.25
        self._read_at = 0.0

    def _backend(self, spec: TrialSpec):
        from tunelib import storage
        from tunelib._trial_writer import FsBackend

        fs = self._fs(spec)
        if storage.is_local(fs):
            return super()._backend(spec)
        # the driver reads results from storage: an object store gets them twice a second
        # (each flush rewrites result.json whole; objects cannot be appended to)
        return FsBackend(fs, spec.trial_path, flush_period_s=0.5)

    def _on_checkpoint(self, record: CheckpointRecord) -> None:
        # before the result line that names it: the driver reads it when it sees that line
        path = self._control_path.rsplit("/", 1)[0] + "/" + CHECKPOINTS_FILE
        _write_atomic(self._control_fs, path, json.dumps(
            {"name": record.name, "kept": list(record.kept),
             "next_index": record.next_index}).encode())

    def _send_result(self, result, checkpoint: Optional[CheckpointRecord]) -> Decision:
        self._reported += 1
        if self._sync:
            return self._wait_for_decision()
        now = time.monotonic()
        if self.decision != Decision.CONTINUE or now - self._read_at < self._read_every:
            return self.decision
        self._read_at = now
        control = _read_json(self._control_fs, self._control_path)
        if (control and control.get("seq") == self._seq
                and control.get("decision") != Decision.CONTINUE):
            self.decision = Decision(control["decision"])
        return self.decision


    def _wait_for_decision(self) -> str:
        """Until the driver has answered this attempt's ``_reported``-th result."""
        deadline = time.monotonic() + self._sync_timeout_s
        pause = 0.005 if self._read_every == 0.0 else 0.05
        while True:
            control = _read_json(self._control_fs, self._control_path)
            if (control and control.get("seq") == self._seq
                    and control.get("answered", 0) >= self._reported):
                self.decision = Decision(control.get("decision", Decision.CONTINUE))
                return self.decision
            if time.monotonic() > deadline:  # the driver is gone: end the trial cleanly
                self.decision = Decision.STOP
                return self.decision
            time.sleep(pause)


def _load_trainable(fs, experiment_path: str):
    import cloudpickle

    from tunelib import storage

    path = f"{experiment_path}/{CONTROL_DIR}/{TRAINABLE_FILE}"
    cached = _trainables.get(path)
    if cached is not None:
        return cached
    record = cloudpickle.loads(storage.read_bytes(fs, path))
    for p in record.get("sys_path", []):
        if p not in sys.path:
            sys.path.append(p)
    try:
        trainable = cloudpickle.loads(record["payload"])
    except Exception as exc:
        trainable = _Unloadable(exc)
    _trainables[path] = (record["key"], trainable)
    return _trainables[path]


def _wait_for_spec(fs, trial_path: str, flow_run_id: str, timeout_s: float) -> dict:
    import cloudpickle

    from tunelib import storage

    path = _control_path(trial_path, SPEC_FILE)
    last = _last_seq.get(flow_run_id, 0)
    deadline = time.monotonic() + timeout_s
    while True:
        _fresh(fs, path)
        try:
            record = cloudpickle.loads(storage.read_bytes(fs, path))
        except (FileNotFoundError, OSError, EOFError, ValueError):
            record = None
        if record and record["flow_run_id"] == flow_run_id and record["seq"] > last:
            _last_seq[flow_run_id] = record["seq"]
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"No trial spec for flow run {flow_run_id} appeared in {path} within "
                f"{timeout_s:g} s: the tunelib driver that submitted it is gone."
            )
        time.sleep(0.1)


class _Heartbeat:
    """Bumps a counter on storage while the attempt runs (clocks of machines may differ,
    so the driver watches for change, not for timestamps)."""

    def __init__(self, fs, path: str, flow_run_id: str, period_s: float):
        import threading

        self._fs, self._path, self._period = fs, path, max(0.1, period_s)
        self._tag = f"{flow_run_id}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._beat(0)
        self._thread = threading.Thread(target=self._loop, name="tunelib-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, n: int) -> None:
        try:
            _write_atomic(self._fs, self._path, f"{self._tag}:{n}".encode())
        except OSError:
            pass  # storage hiccup: the next beat may get through

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self._period):
            n += 1
            self._beat(n)

    def stop(self) -> None:
        self._stop.set()


def run_trial_attempt(flow_run_id: str, params: Dict[str, Any]):
    """Run one attempt of a trial inside the ``trial`` flow on a Prefect worker.

    Returns ``(EventKind, CheckpointRecord or None, Decision)``; raises ``TrialAttemptFailed`` when the
    trainable raised (so that Prefect retries the flow run in place).
    """
    from tunelib import storage

    fs, _ = storage.get_fs_and_path(params["experiment_uri"])
    trial_path = params["trial_path"]
    heartbeat = _Heartbeat(fs, _control_path(trial_path, HEARTBEAT_FILE), flow_run_id,
                           float(params.get("heartbeat_s", 2.0)))
    try:
        record = _wait_for_spec(fs, trial_path, flow_run_id,
                                float(params.get("spec_timeout_s", 600)))
        spec: TrialSpec = record["spec"]
        seq = record["seq"]
        key, trainable = _load_trainable(fs, params["experiment_path"])
        worker = _FlowWorker(fs, _control_path(trial_path, CONTROL_FILE), seq,
                             sync=bool(params.get("sync_decisions")),
                             sync_timeout_s=float(params.get("spec_timeout_s", 600)))
        worker.trainables[key] = trainable
        worker.run(spec)
    finally:
        heartbeat.stop()
    message = worker.conn.message
    if not isinstance(message, (AttemptEnded, AttemptFailed)):
        message = AttemptFailed("the trial ended without an outcome")
    outcome: Dict[str, Any] = {"flow_run_id": flow_run_id, "seq": seq}
    if isinstance(message, AttemptFailed):
        outcome.update(kind=EventKind.ERROR, error_text=message.error_text)
    else:
        outcome["kind"] = EventKind.PAUSED if message.paused else EventKind.DONE
        if message.checkpoint is not None:
            record = message.checkpoint
            outcome["checkpoint"] = {"name": record.name, "kept": list(record.kept),
                                     "next_index": record.next_index}
    _write_atomic(fs, _control_path(trial_path, OUTCOME_FILE), json.dumps(outcome).encode())
    if isinstance(message, AttemptFailed):
        raise TrialAttemptFailed(message.error_text)
    return outcome["kind"], message.checkpoint, worker.decision
