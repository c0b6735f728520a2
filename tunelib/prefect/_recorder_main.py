"""The recorder process: runs ``PrefectRecorder`` for a driver's ``RecorderProcess``.

    python -m tunelib.prefect._recorder_main <fd of its end of the driver's socketpair>

Reads the ``PrefectRecorder`` keyword arguments, then batches of the driver's events
``(kind, time, args)``, and puts each on the recorder's queue as it is (the records keep
the driver's times), besides the control messages (``recorder_process.WATCH_CANCEL``,
``WANT_RUN``, ``CLOSE``, ``DETACH``). Sends back what the driver asks the recorder for: the API and each
run as soon as the recorder knows them, cancel notices, progress, and at the end
``("closed", missing, stats)``.

After the close it drains (``PrefectRecorder.close(timeout)``), then answers, or, when the
driver stopped waiting (``DETACH``) or is gone, prints what could not be recorded in ONE
warning on stderr itself. A driver gone before the close (killed): the experiment is
recorded as FAILED when it had not finished, the rest drained, then it exits.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Dict, Optional

from tunelib._lifecycle import ExperimentOutcome
from tunelib.prefect.recorder_process import (
    CLOSE,
    DETACH,
    WANT_RUN,
    WATCH_CANCEL,
    background_log,
)

POLL_S = 0.05          # how often new runs are looked for (the executors wait on them)
PROGRESS_S = 0.5       # how often what is left is reported
# a driver gone without close(): drain this long at most (runner's default)
ORPHAN_DRAIN_TIMEOUT_S = float(os.environ.get("TUNELIB_RECORD_DRAIN_TIMEOUT_S", "120"))


class _Unpickler(pickle.Unpickler):
    """Loads what the driver's plain pickle named by reference: a class of the user's
    script (``__main__`` is not theirs here) becomes a stand-in of the same name, so the
    event is recorded (its repr) instead of lost."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (AttributeError, ImportError):
            return type(name, (_StandIn,), {"__module__": module, "__qualname__": name})


class _StandIn:
    """An object of a class the recorder process cannot import."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_StandIn":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} {self.__dict__!r}>"


def _loads(data: bytes) -> Any:
    import io

    return _Unpickler(io.BytesIO(data)).load()


class _Driver:
    """The connection back to the driver: sends under a lock; a broken one is dropped."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.lock = threading.Lock()
        self.listening = True   # False once it detached or went away

    def send(self, message: tuple) -> None:
        if not self.listening:
            return
        try:
            with self.lock:
                self.conn.send(message)
        except (OSError, ValueError):
            self.listening = False


class RecorderHost:
    """Feeds a ``PrefectRecorder`` the driver's events and answers for it."""

    def __init__(self, conn: Connection, recorder, driver: _Driver):
        self.conn = conn
        self.recorder = recorder
        self.driver = driver
        self.unanswered: Dict[Optional[str], None] = {None: None}   # runs not sent yet
        self.started = self.finished = False
        self.close_timeout: Optional[float] = None
        self.closing = threading.Event()
        self.stop_polling = threading.Event()

    # ---------------------------------------------------------------- from the driver
    def read(self) -> None:
        """Reader thread: events to the recorder's queue until the close, then what the
        driver still says (DETACH); EOF: the driver is gone."""
        put = self.recorder._q.put
        while True:
            try:
                batch = _loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                self.driver.listening = False
                _let_go_of_outputs()
                break
            for item in batch:
                kind = item[0]
                if kind == WATCH_CANCEL:
                    self.recorder.watch_cancel(lambda trial_id: self.driver.send(
                        ("cancel", trial_id)))
                elif kind == CLOSE:
                    self.close_timeout = item[2][0]
                    self.closing.set()
                elif kind == WANT_RUN:
                    self.recorder.want_run(item[2][0])
                elif kind == DETACH:
                    self.driver.listening = False
                    _let_go_of_outputs()
                else:
                    if kind in ("trial_started", "trial_attached"):
                        self.unanswered[item[2][0]] = None
                    elif kind == "experiment_started":
                        self.started = True
                    elif kind == "experiment_finished":
                        self.finished = True
                    put(item)
        self.closing.set()

    # ---------------------------------------------------------------- to the driver
    def poll(self) -> None:
        """Poller thread: the API and each new run, as soon as the recorder has them;
        what is left, twice a second."""
        api_sent = False
        last_progress = 0.0
        rec = self.recorder
        while not self.stop_polling.wait(POLL_S):
            if not api_sent and rec.api_url:
                api_sent = True
                self.driver.send(("api", rec.api_url, rec.embedded))
            if api_sent:
                self._send_runs()
            now = time.monotonic()
            if now - last_progress >= PROGRESS_S:
                last_progress = now
                self.driver.send(("progress", self.pending()))

    def _send_runs(self) -> None:
        """Each run once the recorder created it (a run stays its trial's: a retry, a
        resume after a pause go on in the same flow run)."""
        rec = self.recorder
        for trial_id in list(self.unanswered):
            context = rec.run_context(trial_id, want=False)
            if context is not None:
                del self.unanswered[trial_id]
                self.driver.send(("run", trial_id, context.api_url, context.flow_run_id))

    def pending(self) -> int:
        """Events and writes not acknowledged yet."""
        rec = self.recorder
        record = rec._record
        return rec._q.qsize() + (record.outstanding() if record is not None else 0)

    # ---------------------------------------------------------------- the end
    def finish(self) -> None:
        self.closing.wait()
        rec = self.recorder
        timeout = self.close_timeout
        if timeout is None:   # the driver went away without closing
            timeout = ORPHAN_DRAIN_TIMEOUT_S
            if self.started and not self.finished:
                rec._q.put(("experiment_finished", time.time(), (ExperimentOutcome.FAILED, [])))
        missing = rec.close(timeout)
        self.stop_polling.set()
        if self.driver.listening:
            self._send_runs()
            self.driver.send(("closed", missing, _plain(rec.stats)))
        if not self.driver.listening and missing:
            name = f" {rec._name!r}" if rec._name else ""
            print(f"tunelib: Prefect has not recorded everything of experiment{name}: "
                  + "; ".join(missing[:20]), file=sys.stderr, flush=True)


def _let_go_of_outputs() -> None:
    """The driver stopped listening: stop holding its stdout/stderr where they are a pipe or
    a file (``| tee``, ``subprocess.run(capture_output=True)`` would wait for the drain);
    a terminal is kept, so that a warning at the end is seen."""
    targets = [fd for fd in (1, 2) if not os.isatty(fd)]
    if not targets:
        return
    try:
        os.makedirs(os.path.dirname(background_log(os.getpid())), exist_ok=True)
        log = os.open(background_log(os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        log = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    for fd in targets:
        os.dup2(log, fd)
    os.close(log)


def _plain(stats: Dict[str, Any]) -> Dict[str, Any]:
    return pickle.loads(pickle.dumps(stats))


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    driver = _Driver(conn)
    try:
        kwargs = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    from tunelib.prefect.recorder import PrefectRecorder

    waiting_text = lambda text: driver.send(("say", text))  # noqa: E731
    try:
        recorder = PrefectRecorder(progress=waiting_text, **kwargs)
    except Exception as exc:  # noqa: BLE001 - said to the driver, which reports it
        driver.send(("closed", [f"could not start recording: {type(exc).__name__}: {exc}"],
                     {}))
        return
    host = RecorderHost(conn, recorder, driver)
    threads = [threading.Thread(target=host.read, name="tunelib-recorder-read", daemon=True),
               threading.Thread(target=host.poll, name="tunelib-recorder-poll", daemon=True)]
    for thread in threads:
        thread.start()
    host.finish()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # Prefect's and the reader's threads are done with: do not wait on them
