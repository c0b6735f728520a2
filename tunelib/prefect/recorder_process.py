"""RecorderProcess: the experiment's Prefect recorder in a process of its own.

``PrefectRecorder`` writes through asyncio, httpx and pydantic: in the driver its thread
competes with the controller for the GIL (2 cores: for most of the experiment), and fit()
waited at the end until every record was acknowledged (300 one-iteration trials: the
experiment took 1.7 s, fit() 46 s; a cold 1-trial run waited 4-5 s for the embedded
server to boot). Here the driver keeps only a proxy; ``PrefectRecorder`` runs unchanged in
``python -m tunelib.prefect._recorder_main``, started in a session of its own:

* hot path: each method is one ``SimpleQueue.put`` (``QueueRecorder``), with the driver's
  ``time.time()``; a pump thread sends what is queued every ``PUMP_S`` as ONE pickled batch
  over a socketpair (plain pickle; cloudpickle, then the JSON view of the arguments, for a
  batch holding something plain pickle cannot take); the process feeds the events to its
  ``PrefectRecorder``'s queue as they are, so every record keeps the driver's time;
* answers, read by a reader thread: the API (``("api", api_url, embedded)``) and each run
  as soon as it exists (``("run", trial_id or None, api_url, flow_run_id)``: what
  ``run_context`` answers the executors with), cancel notices (the ``watch_cancel``
  callback is called on the reader thread), progress (``("progress", pending)`` twice a
  second: what is not acknowledged yet), a line to say while close() waits
  (``("say", text)``), and the end (``("closed", missing, stats)``);
* ``close(timeout)`` waits ``TUNELIB_RECORD_WAIT_S`` (default 1 s) at most: when the
  records are written by then it returns what is missing, as ``PrefectRecorder.close``.
  Under the default it does not wait at all while the API has not answered yet (a cold
  embedded server takes 2-3 s to boot, longer than a short experiment: nothing would be
  written within the wait). Else it DETACHES: says so in one line on stderr (how many
  records are left, the process's pid) and returns ``[]``. The process goes on draining
  (``timeout`` bounds it, as it bounds a close() that waits), prints what could not be
  recorded itself, and exits. It holds the embedded server's users lock meanwhile (its own
  ``ServerHandle``), so the server stays up until it is done; a script that exits right
  after fit() leaves it running, and a Ctrl-C in the terminal does not reach it (its own
  session). A driver that dies without close() leaves it the same way: it records the
  experiment as failed and drains.

A fit() called inside a user's flow (``caller``) keeps the in-process recorder: the
caller's flow must not end before its subflow is recorded, and a temporary server Prefect
started for it ends with the caller's process (``tunelib.prefect.create_recorder``).

Example::

    rec = RecorderProcess(window=0.5)
    rec.experiment_started("exp", {}, [])
    ...
    rec.close(120)   # [] when all was recorded, or when it records on in the background
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing import Pipe
from typing import Any, Callable, Dict, List, Optional

from tunelib.recording import CancelCallback, QueueRecorder, RunContext

__all__ = ["RecorderProcess", "WAIT_ENV", "encode_batch"]

log = logging.getLogger("tunelib.recorder")

# how long close() waits for the records before it leaves them to the process
WAIT_ENV = "TUNELIB_RECORD_WAIT_S"
DEFAULT_WAIT_S = 1.0
PUMP_S = 0.02          # the pump sends what is queued this often, as one batch
# close() waits for a close bounded by ``timeout`` this much longer (the recorder's own
# abort takes up to 2 s, then the answer travels)
CLOSE_GRACE_S = 10.0
PUMP_JOIN_S = 30.0     # pickling what is still queued when close() is called

# control messages, queued in order with the events (kind, time, args)
WATCH_CANCEL = "_watch_cancel"
CLOSE = "_close"
DETACH = "_detach"
WANT_RUN = "_want_run"   # a trial's run is needed now (PrefectRecorder.want_run)


def background_log(pid: int) -> str:
    """Where a detached recorder process writes what it says once its driver stopped
    listening, when the driver's output is not a terminal (a pipe held open would keep
    ``python train.py | tee log`` waiting for the drain)."""
    from tunelib.prefect._where import prefect_home

    return os.path.join(prefect_home(), f"tunelib-recorder-{pid}.log")


def wait_seconds() -> float:
    """``TUNELIB_RECORD_WAIT_S``: how long close() waits before it detaches."""
    text = os.environ.get(WAIT_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_WAIT_S
    except ValueError:
        raise ValueError(f"{WAIT_ENV}={text!r} must be a number of seconds") from None


def encode_batch(batch: List[tuple]) -> bytes:
    """``batch`` pickled: plain pickle (fast: results are plain data), else cloudpickle (a
    lambda or a class of the user's script in a config), else each event alone, with the
    JSON view of the arguments of an event cloudpickle cannot take either (a lock in a
    result): recorded as text rather than lost."""
    try:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any pickling failure: the slower paths
        pass
    import cloudpickle

    try:
        return cloudpickle.dumps(batch)
    except Exception:  # noqa: BLE001
        pass
    from tunelib._layout import to_json_value

    items = []
    for kind, t, args in batch:
        try:
            cloudpickle.dumps(args)
            items.append((kind, t, args))
        except Exception:  # noqa: BLE001
            items.append((kind, t, tuple(to_json_value(a) for a in args)))
    return cloudpickle.dumps(items)


class RecorderProcess(QueueRecorder):
    """The driver's side of a recorder process (see the module docstring).

    Args:
        progress: told what is left while close() waits for the records (more than 2 s:
            with ``TUNELIB_RECORD_WAIT_S`` above that); default a WARNING on
            ``tunelib.recorder``.
        wait_s: how long close() waits before it detaches (default
            ``TUNELIB_RECORD_WAIT_S``, else 1 s).
        **kwargs: ``PrefectRecorder``'s ``api_url``, ``window``, ``max_in_flight``,
            ``server_env``, ``startup_timeout`` (not ``caller``: see the module docstring).
    """

    def __init__(self, progress: Optional[Callable[[str], None]] = None,
                 wait_s: Optional[float] = None, **kwargs: Any):
        super().__init__()
        if "caller" in kwargs:
            raise ValueError("RecorderProcess does not take caller=: a fit() inside a flow "
                             "records with the in-process PrefectRecorder")
        self.stats.update({"writes_failed": 0, "by_kind": {}, "events": 0, "max_lag_s": 0.0,
                           "server_startup_s": None, "drain_s": None})
        self.wait_s = wait_seconds() if wait_s is None else float(wait_s)
        # waiting for a server still booting is chosen only by an explicit wait
        self._wait_for_boot = wait_s is not None or bool(os.environ.get(WAIT_ENV))
        self._progress = progress or (lambda text: log.warning("%s", text))
        self.api_url: Optional[str] = None
        self.embedded = False
        self._runs: Dict[Optional[str], RunContext] = {}
        self._wanted: set = set()   # trials whose run was asked for (WANT_RUN sent)
        self._cancel: Optional[CancelCallback] = None
        self._name: Optional[str] = None
        self._pending: Optional[int] = None   # not acknowledged yet, as last reported
        self._sent = 0                        # events sent to the process
        self._closed = threading.Event()
        self._result: Optional[List[str]] = None
        self._waiting = False                 # close() waits: say what it waits for
        self._detached = False
        self._send_lock = threading.Lock()
        self._conn, child = Pipe(duplex=True)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tunelib.prefect._recorder_main", str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            start_new_session=True)   # a Ctrl-C to the terminal must not end a drain
        child.close()
        self.pid = self._proc.pid
        self._send(pickle.dumps(kwargs))
        self._reader = threading.Thread(target=self._read, name="tunelib-recorder-reader",
                                        daemon=True)
        self._pump = threading.Thread(target=self._pump_main, name="tunelib-recorder-pump",
                                      daemon=True)
        self._reader.start()
        self._pump.start()

    # ------------------------------------------------------------------ public
    @property
    def experiment_flow_run_id(self) -> Optional[str]:
        context = self._runs.get(None)
        return context.flow_run_id if context else None

    def trial_flow_run_id(self, trial_id: str) -> Optional[str]:
        context = self._runs.get(trial_id)
        return context.flow_run_id if context else None

    def run_context(self, trial_id: Optional[str] = None) -> Optional[RunContext]:
        context = self._runs.get(trial_id)
        if context is None and trial_id is not None and trial_id not in self._wanted:
            self._wanted.add(trial_id)   # asked once: the process writes its start now
            self._put((WANT_RUN, time.time(), (trial_id,)))
        return context

    def experiment_started(self, name, parameters, tags):
        self._name = name
        super().experiment_started(name, parameters, tags)

    def watch_cancel(self, callback: CancelCallback) -> None:
        """Call ``callback(None)`` / ``callback(trial_id)`` when the experiment's / a
        trial's run is cancelled in Prefect; called from the reader thread."""
        self._cancel = callback
        self._put((WATCH_CANCEL, time.time(), ()))

    def close(self, timeout: float) -> List[str]:
        """Wait up to ``wait_s`` for every record: then what was not recorded (empty when
        all was), as ``PrefectRecorder.close(timeout)``. Else leave the rest to the
        process, say so on stderr, and return ``[]``. Under the default ``wait_s`` (none
        given, ``TUNELIB_RECORD_WAIT_S`` unset), a server that has not answered yet is
        not waited for."""
        t0 = time.monotonic()
        self._put((CLOSE, time.time(), (float(timeout),)))
        self._pump.join(PUMP_JOIN_S)
        self._waiting = True
        wait_s = self.wait_s if self.api_url or self._wait_for_boot else 0.0
        done = self._closed.wait(max(0.0, min(wait_s, timeout + CLOSE_GRACE_S)
                                     - (time.monotonic() - t0)))
        self._waiting = False
        if done:
            self.stats["drain_s"] = round(time.monotonic() - t0, 3)
            return list(self._result or [])
        self._detached = True
        self._send_quietly(pickle.dumps([(DETACH, time.time(), ())]))
        left = self._pending if self._pending is not None else self._sent
        name = f" of experiment {self._name}" if self._name else ""
        print(f"tunelib: Prefect is still recording {left} records{name} (in the "
              f"background, pid {self.pid}; a script may exit: they are written before "
              f"that process ends; what it says next goes to {background_log(self.pid)} "
              "unless the output is a terminal)", file=sys.stderr, flush=True)
        return []

    @property
    def detached(self) -> bool:
        """close() returned before the records were written (the process drains on)."""
        return self._detached

    # ------------------------------------------------------------------ pump
    def _pump_main(self) -> None:
        get, get_nowait = self._q.get, self._q.get_nowait
        while True:
            batch = [get()]
            time.sleep(PUMP_S)   # let the hot loop queue more: one send per batch
            while True:
                try:
                    batch.append(get_nowait())
                except Exception:  # queue.Empty
                    break
            closing = any(item[0] == CLOSE for item in batch)
            self._sent += sum(1 for item in batch if not item[0].startswith("_"))
            if not self._send_quietly(encode_batch(batch)) or closing:
                return

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self._conn.send_bytes(data)

    def _send_quietly(self, data: bytes) -> bool:
        """Send; False when the process is gone (close() says what was lost)."""
        try:
            self._send(data)
            return True
        except OSError:
            return False

    # ------------------------------------------------------------------ answers
    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001 - a message that does not unpickle
                log.debug("bad message from the recorder process: %r", exc)
                continue
            kind = message[0]
            if kind == "run":
                _, trial_id, api_url, flow_run_id = message
                self._runs[trial_id] = RunContext(api_url, flow_run_id)
            elif kind == "api":
                self.api_url, self.embedded = message[1], message[2]
            elif kind == "progress":
                self._pending = message[1]
            elif kind == "cancel":
                callback = self._cancel
                if callback is not None:
                    try:
                        callback(message[1])
                    except Exception:  # noqa: BLE001 - the engine's; must not end reading
                        log.exception("the cancel callback failed")
            elif kind == "say":
                if self._waiting:
                    self._progress(message[1])
            elif kind == "closed":
                self._result = list(message[1])
                self.stats.update(message[2])
                self._closed.set()
                break
        if not self._closed.is_set():   # the process ended without answering
            code = self._proc.poll()
            if code is None:
                try:
                    code = self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    code = "?"
            self._result = [f"the Prefect recorder process (pid {self.pid}) ended "
                            f"(exit code {code}) before it recorded everything; not "
                            f"recorded: up to {self._sent} events"]
            self._closed.set()
