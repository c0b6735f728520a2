"""The Prefect API an experiment records into.

* If ``PREFECT_API_URL`` is set (environment or the active Prefect profile), that server is
  used as it is (a user-started ``prefect server start``, Prefect Cloud, ...): nothing is
  started and nothing is stopped.
* Otherwise ONE embedded server is started for the experiment: a uvicorn subprocess on the
  SQLite database under ``PREFECT_HOME`` (``SubprocessASGIServer``), booting in a background
  thread so trials start at once, and stopped by :meth:`ServerHandle.stop` after the
  recorder's drain.

The embedded server only has to store what the recorder writes, so the services that act
on runs (schedulers, late-run marking, worker health, automations, ...) are switched off
for it; see ``EMBEDDED_SERVER_ENV`` and bench/prefect_writes.py for what that buys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Dict, Optional

# Services a recording-only server does not need. Measured with bench/prefect_writes.py
# (8 trials x 200 results in 5 s, one request in flight): with Prefect's defaults 5 of 6
# runs hit "database is locked" 503s (each stalls the writer >= 2 s: the client backs off
# 2, 4, 8 s); with the event persister off, 0 503s in 12 runs and 10-12 ms a write.
#   event_persister: stores events for the UI's Events feed. The runs, states, task runs
#     and artifacts the recorder writes do not depend on it; it batches inserts into the
#     same SQLite file and is what locks the recorder out. Set
#     PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED=true to keep the Events feed.
#   scheduler / late_runs / foreman / pause_expirations / cancellation_cleanup /
#   repossessor: act on deployments, workers, late or paused runs - none exist here;
#   triggers: automations; db_vacuum / cleanup_reconciler: periodic housekeeping;
#   event_logger: debug echo of events.
# Kept on: task_run_recorder (task runs that flows run by Prefect's own engine send as
# events; costs nothing measurable when idle).
# A variable already set in the environment (or the Prefect profile) wins over these.
DISABLED_SERVICES = (
    "EVENT_PERSISTER",
    "SCHEDULER",
    "LATE_RUNS",
    "FOREMAN",
    "PAUSE_EXPIRATIONS",
    "CANCELLATION_CLEANUP",
    "REPOSSESSOR",
    "TRIGGERS",
    "DB_VACUUM",
    "CLEANUP_RECONCILER",
    "EVENT_LOGGER",
)

EMBEDDED_SERVER_ENV: Dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in DISABLED_SERVICES},
}


def configured_api_url() -> Optional[str]:
    """PREFECT_API_URL from the environment or the active profile, or None."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    try:
        from prefect.settings import get_current_settings

        return get_current_settings().api.url or None
    except Exception:  # pragma: no cover - broken profile: behave as unset
        return None


def wait_for_api(api_url: str, process: subprocess.Popen, timeout: float, what: str,
                 hint: str = "", poll_s: float = 0.05) -> None:
    """Wait until ``<api_url>/health`` answers 200; raise when the server ``process`` exits
    first or ``timeout`` seconds pass (``what`` names the server in the message)."""
    import time
    import urllib.error
    import urllib.request

    suffix = f"; {hint}" if hint else ""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting"
                               + suffix)
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {timeout:g} s" + suffix)
        time.sleep(poll_s)


class _EmbeddedServer:
    """Prefect's embedded server (what ``SubprocessASGIServer`` runs: uvicorn on
    ``create_app``, UI off), launched WITHOUT importing prefect in this process, so that it
    boots while the driver imports prefect's client: that overlap is ~2 s of every cold
    experiment. ``defaults`` apply where the environment does not set the variable."""

    def __init__(self, port: int, defaults: Dict[str, str]):
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.defaults = defaults
        self.process: Optional[subprocess.Popen] = None

    def launch(self, skip: frozenset = frozenset()) -> None:
        import importlib.util

        spec = importlib.util.find_spec("prefect")
        app_dir = os.path.dirname(os.path.dirname(spec.origin))
        env = dict(os.environ)
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                     "PREFECT__SERVER_FINAL": "1"})
        for key, value in self.defaults.items():
            if key not in os.environ and key not in skip:
                env[key] = value
        env["TUNELIB_PARENT_PID"] = str(os.getpid())
        self.process = subprocess.Popen(
            # uvicorn under a wrapper that exits when this process is gone
            [sys.executable, "-m", "tunelib.prefect._server_main", "--app-dir", app_dir,
             "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env,
        )

    def wait_healthy(self, timeout: float) -> None:
        try:
            wait_for_api(self.api_url, self.process, timeout, "the embedded Prefect server",
                         hint="see its output above; PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_"
                              "SECONDS raises the startup limit")
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _profile_settings() -> Dict[str, str]:
    """Settings the active Prefect profile sets (imports prefect)."""
    from prefect.settings import get_current_settings

    return get_current_settings().to_environment_variables(exclude_unset=True)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerHandle:
    """The API used by one experiment; ``start()`` returns at once.

    ``wait_ready(timeout)`` blocks until the API answers and returns its URL (raises on a
    failed start); ``stop()`` stops the embedded server if this handle started one.
    """

    def __init__(self, api_url: Optional[str] = None, extra_env: Optional[Dict[str, str]] = None,
                 startup_timeout: int = 120, export_env: bool = False):
        self._given_url = api_url
        self._extra_env = dict(EMBEDDED_SERVER_ENV if extra_env is None else extra_env)
        self._startup_timeout = startup_timeout
        self._export_env = export_env
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._server = None
        self.api_url: Optional[str] = None
        self.embedded = False
        self.error: Optional[BaseException] = None
        self.startup_seconds: Optional[float] = None

    def start(self) -> "ServerHandle":
        self._thread = threading.Thread(target=self._boot, name="tunelib-prefect-server",
                                        daemon=True)
        self._thread.start()
        return self

    def _boot(self) -> None:
        import time

        t0 = time.perf_counter()
        try:
            url = self._given_url or os.environ.get("PREFECT_API_URL")
            if url:
                self.api_url = url
            else:
                # launch first, then import prefect to read the profile: the server boots
                # meanwhile; a profile that names a server or sets one of our defaults
                # (rare) sends us back
                server = _EmbeddedServer(_free_port(), self._extra_env)
                server.launch()
                self._server = server
                url = configured_api_url()
                if url:
                    server.stop()
                    self._server = None
                    self.api_url = url
                    return
                overridden = frozenset(_profile_settings()) & frozenset(self._extra_env)
                if overridden:
                    server.stop()
                    server.launch(skip=overridden)
                self.embedded = True
                server.wait_healthy(self._startup_timeout)
                self.api_url = server.api_url
                if self._export_env:
                    os.environ["PREFECT_API_URL"] = server.api_url
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready
            self.error = exc
        finally:
            self.startup_seconds = time.perf_counter() - t0
            self._ready.set()

    def wait_ready(self, timeout: Optional[float] = None) -> str:
        if not self._ready.wait(timeout):
            raise TimeoutError("the Prefect API is not up yet")
        if self.error is not None:
            raise RuntimeError(f"could not start the Prefect API: {self.error}") from self.error
        assert self.api_url is not None
        return self.api_url

    @property
    def booted(self) -> bool:
        """The start is over: the API answers (``ready``) or it failed (``error``)."""
        return self._ready.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.error is None

    def stop(self) -> None:
        """Stop the embedded server (waits for its boot to end first); no-op otherwise."""
        if self._thread is not None:
            self._thread.join(self._startup_timeout + 10)
        if self._server is not None:
            try:
                self._server.stop()
            finally:
                self._server = None
                if self._export_env and os.environ.get("PREFECT_API_URL") == self.api_url:
                    del os.environ["PREFECT_API_URL"]
