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


def _embedded_server_class():
    from prefect.server.api.server import SubprocessASGIServer

    class RecordingServer(SubprocessASGIServer):
        """SubprocessASGIServer whose subprocess also gets ``extra_env`` (as defaults:
        a variable the user set in the environment or profile keeps its value)."""

        extra_env: Dict[str, str] = {}

        def _run_uvicorn_command(self) -> "subprocess.Popen":
            import prefect
            from prefect.settings import get_current_settings

            server_env = {
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
            }
            configured = get_current_settings().to_environment_variables(exclude_unset=True)
            defaults = {k: v for k, v in self.extra_env.items()
                        if k not in os.environ and k not in configured}
            return subprocess.Popen(
                args=[
                    sys.executable, "-m", "uvicorn",
                    "--app-dir", str(prefect.__module_path__.parent),
                    "--factory", "prefect.server.api.server:create_app",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "error", "--lifespan", "on",
                ],
                env={
                    **os.environ,
                    **server_env,
                    **configured,
                    **defaults,
                },
            )

    return RecordingServer


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
            url = self._given_url or configured_api_url()
            if url:
                self.api_url = url
            else:
                cls = _embedded_server_class()
                # an explicit free port: SubprocessASGIServer keeps one instance per port,
                # and the port-less one may be Prefect's own ephemeral server
                server = cls(_free_port())
                server.extra_env = self._extra_env
                self._server = server
                self.embedded = True
                server.start(timeout=self._startup_timeout)
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
