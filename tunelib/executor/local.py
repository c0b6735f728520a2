"""The local executor: a pool of long-lived worker processes on this machine.

Workers are started once per experiment (in parallel, while the first trials are being
prepared), reused across trials, and talk to the driver over Unix-socket connections.
A worker that dies (segfault, SIGKILL, out of memory) shows up as an EOF on its
connection: its trial gets an ``error`` event and a fresh worker takes its slot, so the
driver never waits on a dead process.

With a ``recorder``, workers capture their trials' output and the driver hands each batch
of lines to ``recorder.trial_logs``; a worker whose trainable uses Prefect asks for its
trial's Prefect run, which the recorder creates in the background: ``poll`` answers once
``recorder.run_context`` knows it (other trials go on meanwhile), or None after
``RUN_CONTEXT_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from multiprocessing.connection import Listener, wait
from typing import Dict, List, Optional

from tunelib import _pickling
from tunelib._lifecycle import Decision
from tunelib._trial_writer import FsBackend, apply_forwarded
from tunelib.executor._messages import (
    AttemptEnded,
    AttemptFailed,
    CheckpointFiles,
    Decide,
    FetchCheckpoint,
    Hello,
    LoadTrainable,
    Logs,
    Reported,
    RunAttempt,
    RunContextAnswer,
    RunContextRequest,
    Shutdown,
    StorageOp,
)
from tunelib.executor.base import EventKind, TrialEvent, TrialSpec
from tunelib.recording import NullRecorder, Recorder

_CONNECT_TIMEOUT_S = 120.0
# how long a trial that uses Prefect waits for the recorder to create its flow run
RUN_CONTEXT_TIMEOUT_S = 60.0
# how long poll() waits at most while a worker waits for its run context
_RUN_CONTEXT_POLL_S = 0.05


class _Slot:
    """One worker process and what it is doing."""

    def __init__(self, index: int, env: Dict[str, str]):
        self.index = index
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.conn = None
        self.trial_id: Optional[str] = None
        self.trainables: set = set()
        # when its worker asked for the trial's run context: the time it gives up
        self.context_deadline: Optional[float] = None


class LocalExecutor:
    """Runs trials in ``num_workers`` worker processes (see module docstring)."""

    def __init__(
        self,
        num_workers: int,
        gpus_per_worker: float = 0,
        gpu_ids: Optional[List[str]] = None,
        storage_fs=None,
        experiment_path: Optional[str] = None,
        recorder: Optional[Recorder] = None,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        from tunelib.storage import is_process_local

        self.num_workers = num_workers
        self._forward = storage_fs is not None and is_process_local(storage_fs)
        self._storage_fs = storage_fs
        self._experiment_path = experiment_path
        # NullRecorder records nothing: no output is captured for it
        self._recorder = None if isinstance(recorder, NullRecorder) else recorder
        self._backends: Dict[str, FsBackend] = {}
        self._trainables: Dict[str, bytes] = {}
        self._slots: List[_Slot] = []
        self._by_trial: Dict[str, _Slot] = {}
        self._pending: List[TrialEvent] = []
        self._sockdir = tempfile.mkdtemp(prefix="tunelib-")
        self._authkey = secrets.token_bytes(16)
        self._listener: Optional[Listener] = None
        gpu_ids = list(gpu_ids or [])
        per = int(gpus_per_worker) if gpus_per_worker else 0
        for i in range(num_workers):
            env = dict(os.environ)
            if per:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids[i * per:(i + 1) * per])
            elif gpu_ids:
                env["CUDA_VISIBLE_DEVICES"] = ""
            self._slots.append(_Slot(i, env))

    # ------------------------------------------------------------------ lifecycle
    @property
    def capacity(self) -> int:
        return self.num_workers

    def start(self) -> None:
        address = os.path.join(self._sockdir, "driver.sock")
        self._listener = Listener(address, family="AF_UNIX", authkey=self._authkey)
        for slot in self._slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        env = dict(slot.env)
        env["TUNELIB_WORKER_ADDRESS"] = self._listener.address
        env["TUNELIB_WORKER_AUTHKEY"] = self._authkey.hex()
        env["TUNELIB_WORKER_FORWARD_STORAGE"] = "1" if self._forward else "0"
        # trainables defined in importable modules are pickled by reference: workers must
        # find those modules where the driver found them
        env["TUNELIB_WORKER_SYS_PATH"] = os.pathsep.join([os.getcwd()] + [p for p in sys.path if p])
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "tunelib.executor.worker"], env=env, stdin=subprocess.DEVNULL,
            # a process group of its own: a Ctrl-C in the terminal reaches the driver alone,
            # which stops the trials resumably; a worker that got it would die mid-step and
            # its trial count as failed
            process_group=0,
        )
        slot.conn = None
        slot.trainables = set()

    def _connect(self, slot: _Slot) -> None:
        """Accept connections until ``slot``'s own worker has connected."""
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while slot.conn is None:
            if slot.proc.poll() is not None:
                raise RuntimeError(
                    f"tunelib worker process exited with code {slot.proc.returncode} before "
                    "connecting; see its output above."
                )
            if time.monotonic() > deadline:
                raise TimeoutError("a tunelib worker process did not connect within 120 s")
            # accept() would block for ever on a worker that crashed before connecting
            if not wait([self._listener._listener._socket], timeout=0.5):
                continue
            conn = self._listener.accept()
            hello = conn.recv()
            pid = hello.pid if isinstance(hello, Hello) else None
            owner = next((s for s in self._slots if s.proc and s.proc.pid == pid), None)
            if owner is None:
                conn.close()
                continue
            owner.conn = conn

    def has_free_slot(self) -> bool:
        return any(slot.trial_id is None for slot in self._slots)

    def register_trainable(self, key: str, payload: bytes) -> None:
        self._trainables[key] = payload

    def start_trial(self, spec: TrialSpec) -> None:
        slot = self._free_slot(spec.trainable_key)
        if slot.proc is None:  # its worker was killed with the trial it ran
            self._spawn(slot)
        if slot.conn is None:
            self._connect(slot)
        if spec.trainable_key not in slot.trainables:
            slot.conn.send(LoadTrainable(spec.trainable_key, self._trainables[spec.trainable_key]))
            slot.trainables.add(spec.trainable_key)
        attempt = RunAttempt(spec, capture_logs=self._recorder is not None,
                             prefect_api_url=self._api_url())
        try:
            _pickling.send(slot.conn, attempt)
        except (TypeError, pickle.PicklingError):
            _pickling.check_picklable(spec.config, "config")  # names the key, then raises
            raise
        slot.trial_id = spec.trial_id
        slot.context_deadline = None
        self._by_trial[spec.trial_id] = slot

    def _api_url(self) -> Optional[str]:
        """The experiment's Prefect API, once the recorder knows it."""
        context = self._recorder.run_context(None) if self._recorder is not None else None
        return context.api_url if context is not None else None

    def _free_slot(self, key: str) -> _Slot:
        free = [slot for slot in self._slots if slot.trial_id is None]
        if not free:
            raise RuntimeError("start_trial() called with no free worker")
        # prefer a connected worker that already holds the trainable, then a started one
        free.sort(key=lambda s: (s.conn is None, s.proc is None, key not in s.trainables))
        return free[0]

    def decide(self, trial_id: str, decision: Decision) -> None:
        slot = self._by_trial.get(trial_id)
        if slot is not None and slot.conn is not None:
            try:
                slot.conn.send(Decide(decision))
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the EOF reaches poll() and becomes an error event

    def kill_trial(self, trial_id: str) -> None:
        """Kill the trial's worker now. Its replacement starts when a trial needs it: trials
        are killed when the experiment ends (a stop, a signal), where a new worker would
        only be started to be stopped."""
        slot = self._by_trial.pop(trial_id, None)
        if slot is None:
            return
        self._kill(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.kill()
            slot.proc.wait()
        if slot.conn is not None:
            slot.conn.close()
        slot.proc = None
        slot.conn = None
        slot.trial_id = None
        slot.context_deadline = None

    def _restart(self, slot: _Slot) -> None:
        self._kill(slot)
        self._spawn(slot)

    def shutdown(self) -> None:
        for slot in self._slots:
            if slot.trial_id is not None or slot.conn is None:
                # a worker still in a trial is stopped as kill_trial would; one that never
                # connected has nothing to finish (it waits for the listener's handshake)
                self._kill(slot)
            else:
                try:
                    slot.conn.send(Shutdown())
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for slot in self._slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()
            if slot.conn is not None:
                slot.conn.close()
        if self._listener is not None:
            self._listener.close()
        for backend in self._backends.values():
            backend.flush(final=True)
        try:
            os.rmdir(self._sockdir)
        except OSError:
            pass

    # ------------------------------------------------------------------ events
    def poll(self, timeout: float) -> List[TrialEvent]:
        events, self._pending = self._pending, []
        busy = {slot.conn: slot for slot in self._slots if slot.trial_id and slot.conn}
        if not busy:
            if not events and timeout > 0:
                time.sleep(min(timeout, 0.05))
            return events
        if any(slot.context_deadline is not None for slot in busy.values()):
            self._answer_run_contexts()
            timeout = min(timeout, _RUN_CONTEXT_POLL_S)
        ready = wait(list(busy), 0 if events else timeout)
        for conn in ready:
            slot = busy[conn]
            # drain everything this worker has sent, not just one message
            while slot.trial_id is not None:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    events.append(self._worker_died(slot))
                    break
                event = self._handle(slot, msg)
                if event is not None:
                    events.append(event)
                    if event.kind is EventKind.RESULT:
                        break  # the worker now waits for a decision
                if not conn.poll():
                    break
        return events

    def _handle(self, slot: _Slot, msg) -> Optional[TrialEvent]:
        trial_id = slot.trial_id
        logs = getattr(msg, "logs", None) if not isinstance(msg, Logs) else msg.lines
        if logs and self._recorder is not None:
            self._recorder.trial_logs(trial_id, logs)
        if isinstance(msg, Logs):
            return None
        if isinstance(msg, Reported):
            return TrialEvent(EventKind.RESULT, trial_id, result=msg.result,
                              checkpoint=msg.checkpoint)
        if isinstance(msg, StorageOp):
            apply_forwarded(self._backend(msg.trial_dirname), msg)
            return None
        if isinstance(msg, FetchCheckpoint):
            slot.conn.send(CheckpointFiles(self._read_files(msg.path)))
            return None
        if isinstance(msg, RunContextRequest):
            slot.context_deadline = time.monotonic() + RUN_CONTEXT_TIMEOUT_S
            self._answer_run_context(slot)
            return None
        if not isinstance(msg, (AttemptEnded, AttemptFailed)):
            raise RuntimeError(f"unexpected message from a worker: {type(msg).__name__}")
        # the trial's attempt is over: the worker is free again
        slot.trial_id = None
        self._by_trial.pop(trial_id, None)
        if isinstance(msg, AttemptFailed):
            return TrialEvent(EventKind.ERROR, trial_id, error_text=msg.error_text,
                              error=msg.error)
        return TrialEvent(EventKind.PAUSED if msg.paused else EventKind.DONE, trial_id,
                          checkpoint=msg.checkpoint)

    # ------------------------------------------------------------------ run contexts
    def _answer_run_contexts(self) -> None:
        for slot in self._slots:
            if slot.context_deadline is not None and slot.trial_id is not None:
                self._answer_run_context(slot)

    def _answer_run_context(self, slot: _Slot) -> None:
        """Answer ``slot``'s worker with its trial's run context once the recorder has it,
        or None: nothing is recorded, or the run was not created in time. An answer that
        cannot be sent (the worker died) leaves the EOF to ``poll``."""
        context = None
        if self._recorder is not None:
            context = self._recorder.run_context(slot.trial_id)
            if context is None and time.monotonic() < slot.context_deadline:
                return  # asked again at the next poll
            if context is None:
                warnings.warn(
                    f"Trial {slot.trial_id}'s Prefect flow run was not created within "
                    f"{RUN_CONTEXT_TIMEOUT_S:g} s: its trainable runs without it, and Prefect "
                    "tasks it calls are not recorded as part of the trial.",
                    RuntimeWarning, stacklevel=2)
        slot.context_deadline = None
        try:
            slot.conn.send(RunContextAnswer(context))
        except OSError:
            pass

    def _worker_died(self, slot: _Slot) -> TrialEvent:
        trial_id = slot.trial_id
        self._by_trial.pop(trial_id, None)
        code = slot.proc.poll() if slot.proc else None
        if code is None and slot.proc is not None:
            try:
                code = slot.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                code = slot.proc.wait()
        self._restart(slot)
        text = (
            f"The worker process running trial {trial_id} died (exit code {code}"
            f"{', signal ' + str(-code) if code is not None and code < 0 else ''}) "
            "before the trial finished: a crash, a kill or out of memory."
        )
        return TrialEvent(EventKind.ERROR, trial_id, error_text=text, error=None)

    # ------------------------------------------------------------------ storage forwarding
    def _backend(self, trial_dirname: str) -> FsBackend:
        backend = self._backends.get(trial_dirname)
        if backend is None:
            backend = self._backends[trial_dirname] = FsBackend(
                self._storage_fs, f"{self._experiment_path}/{trial_dirname}", flush_period_s=0.0
            )
        return backend

    def _read_files(self, path: str):
        from pyarrow.fs import FileSelector, FileType

        out = []
        infos = self._storage_fs.get_file_info(FileSelector(path, recursive=True))
        for info in infos:
            if info.type == FileType.File:
                with self._storage_fs.open_input_stream(info.path) as f:
                    out.append((info.path[len(path):].lstrip("/"), f.read()))
        return out
