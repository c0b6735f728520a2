"""A long-lived worker process of the local executor: runs trials, one at a time.

Started by ``LocalExecutor`` as ``python -m tunelib.executor.worker`` (not through
multiprocessing's spawn, which would re-run an unguarded user script's top level), it
connects back to the driver over a Unix socket and serves ``run`` requests until told to
shut down. The user's trainable runs in this process's main thread.

With a recorder in the driver (``RunAttempt.capture_logs``), an attempt's output is captured
(``tunelib.executor._log_capture``) and sent on the next message the worker sends anyway;
a daemon thread sends lines that waited about a second with no message to ride on. Every
send holds one lock, as that thread shares the connection with the main thread.

A trainable that imported Prefect (``"prefect" in sys.modules`` when the attempt starts)
runs inside its trial's flow run (``tunelib.prefect.trial_context``): the worker asks the
driver for the run (``RunContextRequest``) first. Prefect is never imported otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Client
from typing import Any, Dict, Iterator, List, Optional

from tunelib import _pickling
from tunelib import session as _session
from tunelib._lifecycle import Decision
from tunelib._lifeline import exit_with_parent
from tunelib._trial_writer import (
    ForwardBackend,
    FsBackend,
    LocalBackend,
    TrialWriter,
)
from tunelib.executor import _trial_dir
from tunelib.executor._log_capture import LogCapture, capture_output
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
)
from tunelib.executor.base import CheckpointRecord, TrialSpec
from tunelib.recording import LogLine, RunContext

# how long captured lines wait for a message to ride on before they are sent alone
LOG_FLUSH_PERIOD_S = 1.0


class _Worker:
    def __init__(self, conn, process_local_storage: bool):
        self.conn = conn
        self.process_local_storage = process_local_storage
        self.trainables: Dict[str, Any] = {}
        self.actor = None          # a class Trainable instance kept for reuse_actors
        self.actor_key: Optional[str] = None
        self._fs_cache: Dict[str, Any] = {}
        self._send_lock = threading.Lock()
        self._capture: Optional[LogCapture] = None   # the running attempt's, if captured
        self._flusher: Optional[_LogFlusher] = None

    # ------------------------------------------------------------------ plumbing
    def _fs(self, spec: TrialSpec):
        if spec.storage_filesystem is not None:
            return spec.storage_filesystem
        fs = self._fs_cache.get(spec.experiment_uri)
        if fs is None:
            from tunelib.storage import get_fs_and_path

            fs, _ = get_fs_and_path(spec.experiment_uri)
            self._fs_cache[spec.experiment_uri] = fs
        return fs

    def _backend(self, spec: TrialSpec):
        if self.process_local_storage:
            return ForwardBackend(self._send, spec.trial_dirname)
        fs = self._fs(spec)
        from pyarrow.fs import LocalFileSystem

        if isinstance(fs, LocalFileSystem):
            return LocalBackend(spec.trial_path)
        return FsBackend(fs, spec.trial_path)

    def _checkpoint_factory(self, spec: TrialSpec):
        from tunelib.checkpoint import Checkpoint

        if self.process_local_storage:
            # The driver's memory is out of reach: checkpoints are shipped as files.
            def make(name_or_path: str):
                path = name_or_path if "/" in name_or_path else f"{spec.trial_path}/{name_or_path}"
                return _RemoteCheckpoint(self._send, self.conn, path)

            return make
        fs = self._fs(spec)

        def make(name_or_path: str):
            path = name_or_path if "/" in name_or_path else f"{spec.trial_path}/{name_or_path}"
            return Checkpoint(path, fs)

        return make

    def _send(self, msg) -> None:
        with self._send_lock:
            self._send_unlocked(msg)

    def _send_unlocked(self, msg) -> None:
        try:
            _pickling.send(self.conn, msg)
        except OSError as exc:
            raise _DriverGone() from exc

    def _take_logs(self) -> Optional[List[LogLine]]:
        """The captured lines not sent yet (call with the send lock held)."""
        capture = self._capture
        return capture.take() if capture is not None else None

    def _send_outcome(self, outcome) -> None:
        """Send the attempt's end with its last captured lines; capture ends here."""
        with self._send_lock:
            logs = self._take_logs()
            self._capture = None
            self._send_unlocked(dataclasses.replace(outcome, logs=logs) if logs else outcome)

    def flush_logs(self) -> None:
        """Send the lines that wait, if any (the flusher thread)."""
        with self._send_lock:
            logs = self._take_logs()
            if logs:
                self._send_unlocked(Logs(logs))

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise _DriverGone() from exc

    def _send_result(self, result: Dict[str, Any],
                     checkpoint: Optional[CheckpointRecord]) -> Decision:
        with self._send_lock:
            self._send_unlocked(Reported(result, checkpoint, self._take_logs()))
        while True:
            msg = self._recv()
            if isinstance(msg, Decide):
                return msg.decision
            if isinstance(msg, CheckpointFiles):  # a late answer to a fetch; not expected
                continue
            raise RuntimeError(f"worker expected a decision, got {type(msg).__name__}")

    def _on_checkpoint(self, record: CheckpointRecord) -> None:
        """The result event carries the record to the driver; nothing else to do here."""

    # ------------------------------------------------------------------ serving
    def serve(self) -> None:
        self.conn.send(Hello(os.getpid()))
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):  # the driver is gone
                return
            if isinstance(msg, LoadTrainable):
                import cloudpickle

                try:
                    self.trainables[msg.key] = cloudpickle.loads(msg.payload)
                except Exception as exc:  # reported as the error of each trial that needs it
                    self.trainables[msg.key] = _Unloadable(exc)
            elif isinstance(msg, RunAttempt):
                self.run(msg.spec, capture_logs=msg.capture_logs,
                         prefect_api_url=msg.prefect_api_url, join_trial_run=True)
            elif isinstance(msg, Shutdown):
                self._drop_actor()
                return

    def _drop_actor(self) -> None:
        if self.actor is not None:
            _stop_quietly(self.actor)
        self.actor = None
        self.actor_key = None

    def _working_dir(self, spec: TrialSpec) -> str:
        """The attempt's working directory: the trial's directory when storage is the local
        disk, else a local staging directory (see ``tunelib.executor._trial_dir``)."""
        if not self.process_local_storage:
            from tunelib import storage

            if storage.is_local(self._fs(spec)):
                return os.path.abspath(spec.trial_path)
        return _trial_dir.staging_dir(spec.experiment_name, spec.trial_dirname)

    def _start_capture(self) -> LogCapture:
        if self._flusher is None:
            self._flusher = _LogFlusher(self)
        capture = LogCapture(on_first_line=self._flusher.wake)
        with self._send_lock:
            self._capture = capture
        return capture

    def _run_context(self, trial_id: str) -> Optional[RunContext]:
        """The trial's Prefect run, from the driver (which waits for the recorder)."""
        self._send(RunContextRequest(trial_id))
        while True:
            msg = self._recv()
            if isinstance(msg, RunContextAnswer):
                return msg.context
            if not isinstance(msg, CheckpointFiles):
                raise RuntimeError(f"worker expected a run context, got {type(msg).__name__}")

    def _enter_trial_run(self, stack: contextlib.ExitStack, spec: TrialSpec) -> None:
        """Make the trial's flow run the current one for Prefect's engine (the trainable
        imported Prefect); without it (nothing recorded, not created in time, the API
        unreachable), the trainable runs as it would outside tunelib."""
        context = self._run_context(spec.trial_id)
        if context is None:
            return
        stack.enter_context(_exported_api_url(context.api_url))
        from tunelib.prefect.trial_context import trial_run_context

        try:
            stack.enter_context(trial_run_context(context.api_url, context.flow_run_id))
        except Exception as exc:  # noqa: BLE001 - the trial still runs, without its run
            print(f"tunelib: trial {spec.trial_name} runs outside its Prefect flow run "
                  f"{context.flow_run_id}: {type(exc).__name__}: {exc}", file=sys.stderr)

    def run(self, spec: TrialSpec, capture_logs: bool = False,
            prefect_api_url: Optional[str] = None, join_trial_run: bool = False) -> None:
        """Run one attempt and send its outcome. ``capture_logs``: send its output to the
        driver; ``prefect_api_url``: exported as ``PREFECT_API_URL`` for the attempt;
        ``join_trial_run``: a trainable that imported Prefect runs in the trial's flow run
        (the local executor's workers; a deployed trial runs in its flow run already)."""
        writer = None
        try:
            writer = TrialWriter(self._backend(spec), spec.checkpoint_config,
                                 spec.kept_checkpoints, on_checkpoint=self._on_checkpoint)
            if spec.write_params:
                writer.write_params(spec.config)
            session = _session.TrialSession(
                spec, writer, self._send_result, self._checkpoint_factory(spec)
            )
            _session.set_session(session)
            trainable = self.trainables[spec.trainable_key]
            if isinstance(trainable, _Unloadable):
                raise trainable.error
            from tunelib.trainable import Trainable

            working_dir = self._working_dir(spec)
            with contextlib.ExitStack() as stack:
                stack.enter_context(_trial_dir.in_working_dir(working_dir))
                stack.enter_context(_trial_dir.output_to_files(working_dir, *spec.log_to_file))
                stack.enter_context(_exported_api_url(prefect_api_url))
                if capture_logs:
                    stack.enter_context(capture_output(self._start_capture()))
                if join_trial_run and "prefect" in sys.modules:
                    self._enter_trial_run(stack, spec)
                if isinstance(trainable, type) and issubclass(trainable, Trainable):
                    outcome = self._run_class(spec, session, trainable, working_dir)
                else:
                    outcome = self._run_function(session, trainable)
            writer.close()
            self._send_outcome(outcome)
        except (KeyboardInterrupt, _DriverGone):
            # an interrupt is not the trial's failure (workers run in a process group of
            # their own, so a terminal's Ctrl-C reaches the driver only, which stops the
            # trial itself), nor is a dead driver: no error files, just go
            raise
        except BaseException as exc:  # the trial failed (sys.exit too): report, keep serving
            self._drop_actor()
            text = "".join(traceback.format_exception(exc))
            if writer is not None:
                try:
                    writer.write_error(text, exc, spec.failure_number + 1)
                    writer.close()
                except Exception:
                    traceback.print_exc()
            self._send_outcome(AttemptFailed(text, _picklable(exc)))
        finally:
            self._capture = None
            _session.set_session(None)

    def _run_function(self, session, fn) -> AttemptEnded:
        try:
            returned = fn(session.config)
        except _session.TrialInterrupted as interrupt:
            return AttemptEnded(paused=interrupt.decision == Decision.PAUSE)
        if isinstance(returned, dict):  # Ray reports a returned dict as the final result
            session.report(returned)
        elif returned is not None:
            raise TypeError(
                "A function trainable may return None or a dict of final metrics, "
                f"got {type(returned).__name__}."
            )
        return AttemptEnded()

    def _run_class(self, spec: TrialSpec, session, cls, working_dir: str) -> AttemptEnded:
        from tunelib.trainable import _TrialStorage

        storage = _TrialStorage(spec.trial_path, working_dir)
        actor = None
        if spec.reuse_actor and self.actor is not None and self.actor_key == spec.trainable_key:
            if self.actor.reset(spec.config, storage=storage):
                actor = self.actor
        if actor is None:
            self._drop_actor()
            actor = cls(spec.config, storage=storage)
        try:
            outcome = self._train(spec, session, actor)
        except BaseException:
            # Ray stops a failed trial's instance (its cleanup() runs) before the retry;
            # a kept one is stopped by run()
            if actor is not self.actor:
                _stop_quietly(actor)
            raise
        if spec.reuse_actor:
            self.actor, self.actor_key = actor, spec.trainable_key
        else:
            actor.stop()
        return outcome

    def _train(self, spec: TrialSpec, session, actor) -> AttemptEnded:
        """Restore ``actor`` if resuming, then train it until the driver stops or pauses
        it or a result is done; checkpoints and exports as Ray does."""
        from tunelib.checkpoint import Checkpoint
        from tunelib.trainable import _TrainingResult

        if spec.restore_checkpoint:
            progress = {"training_iteration": spec.start_iteration,
                        "time_total_s": spec.start_time_total}
            with session.latest_checkpoint.as_directory() as local:
                actor.restore(_TrainingResult(Checkpoint.from_directory(local), progress))
        cfg = spec.checkpoint_config
        freq = getattr(cfg, "checkpoint_frequency", 0) or 0
        at_end = bool(getattr(cfg, "checkpoint_at_end", False))

        def save(result) -> CheckpointRecord:
            with tempfile.TemporaryDirectory(prefix="tunelib-ckpt-") as d:
                actor.save(d)
                return session.persist_checkpoint(d, result)

        while True:
            result = actor.train()
            record = None
            if freq and result["training_iteration"] % freq == 0:
                record = save(result)
                # not in Ray's class rows, but it lets any reader pair the checkpoint with
                # its metrics (Ray's own Result.from_path needs it)
                result["checkpoint_dir_name"] = record.name
            session.writer.append_result(result)
            session.last_result = result
            decision = self._send_result(result, record)
            if decision == Decision.CONTINUE and not result.get("done"):
                continue
            if decision == Decision.PAUSE:
                # a checkpoint of this very result was just persisted, or one is taken now
                return AttemptEnded(paused=True, checkpoint=None if record else save(result))
            break
        # the trial ends: Ray checkpoints at the end, then exports the model
        checkpoint = save(result) if at_end and record is None else None
        if spec.export_formats:
            actor.export_model(spec.export_formats)
        return AttemptEnded(checkpoint=checkpoint)


def _stop_quietly(actor) -> None:
    """Stop a trainable that is being let go (its trial failed, or another trial needs
    the worker): an error in its cleanup() is printed, not raised over the trial's."""
    try:
        actor.stop()
    except Exception:
        traceback.print_exc()


@contextlib.contextmanager
def _exported_api_url(api_url: Optional[str]) -> Iterator[None]:
    """``PREFECT_API_URL`` set to the experiment's API for the attempt, so that Prefect
    code the trial imports or starts (subprocesses) finds the experiment's server instead
    of starting one of its own on the same database."""
    if not api_url:
        yield
        return
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


class _LogFlusher:
    """A daemon thread that sends captured lines which found no message to ride on within
    ``LOG_FLUSH_PERIOD_S``; it sleeps while nothing is captured."""

    def __init__(self, worker: "_Worker"):
        self._worker = worker
        self._wake = threading.Event()
        self.wake = self._wake.set
        threading.Thread(target=self._main, name="tunelib-log-flusher", daemon=True).start()

    def _main(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(LOG_FLUSH_PERIOD_S)
            self._wake.clear()
            try:
                self._worker.flush_logs()
            except _DriverGone:
                return


class _DriverGone(BaseException):
    """The connection to the driver broke: the driver died. A BaseException, so that a
    trainable's ``except Exception`` does not take it for its own error."""


class _Unloadable:
    """A trainable that could not be unpickled in this process."""

    def __init__(self, error: Exception):
        self.error = RuntimeError(
            f"The trainable could not be loaded in the worker process: {error!r}. Define it in "
            "the script you run or in a module importable from the driver's sys.path."
        )


class _RemoteCheckpoint:
    """A checkpoint held in the driver's memory filesystem, fetched as files on use."""

    def __init__(self, send, conn, path: str):
        self._send = send
        self._conn = conn
        self.path = path
        self.filesystem = None

    def to_directory(self, path: Optional[str] = None) -> str:
        target = path or tempfile.mkdtemp(prefix="tunelib-ckpt-")
        self._send(FetchCheckpoint(self.path))
        msg = self._conn.recv()
        if not isinstance(msg, CheckpointFiles):
            raise RuntimeError(f"worker expected checkpoint files, got {type(msg).__name__}")
        for rel, data in msg.files:
            full = os.path.join(target, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        return target

    def as_directory(self):
        import contextlib
        import shutil

        @contextlib.contextmanager
        def ctx():
            d = self.to_directory()
            try:
                yield d
            finally:
                shutil.rmtree(d, ignore_errors=True)

        return ctx()

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem=memory, path={self.path})"


def _picklable(exc: BaseException) -> Optional[BaseException]:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return None


def main() -> None:
    address = os.environ["TUNELIB_WORKER_ADDRESS"]
    authkey = bytes.fromhex(os.environ["TUNELIB_WORKER_AUTHKEY"])
    process_local = os.environ.get("TUNELIB_WORKER_FORWARD_STORAGE") == "1"
    # a driver killed with SIGKILL cannot stop us, and a trainable busy in a long step
    # (even in C code holding the GIL) would only notice at its next report: the kernel
    # kills us with the driver (the thread that started us runs the whole experiment)
    exit_with_parent(os.getppid(), kernel_signal=True)
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    # Let user code import modules that sit next to the driver's script; absolute, as
    # trials run in their own working directories
    for path in os.environ.get("TUNELIB_WORKER_SYS_PATH", "").split(os.pathsep):
        if path and os.path.abspath(path) not in sys.path:
            sys.path.append(os.path.abspath(path))
    try:
        _Worker(conn, process_local).serve()
    except _DriverGone:
        pass


if __name__ == "__main__":
    main()
