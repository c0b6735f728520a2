"""The Prefect API an experiment records into.

* ``PREFECT_API_URL`` set (environment or the active Prefect profile), or an ``api_url``
  given: that server is used as it is (a user-started ``prefect server start``, Prefect
  Cloud, ...): nothing is started or stopped. A caller's flow run (``CallerRun``) is the
  same case: its ``api_url`` is used as given. One health check (≈ 2 s at most) turns a
  server that does not answer into one clear error instead of the client's retries.
* Otherwise the experiment uses THE embedded server of its ``PREFECT_HOME``: a uvicorn
  subprocess on the SQLite database there, shared by every process that records into that
  home. Two servers on one SQLite file break (both run the migrations of a fresh database;
  then "database is locked"), so:

  - ``tunelib-server.lock`` (exclusive ``flock``) is held while a process looks for the
    running server and, when there is none, launches one and waits until it answers;
  - ``tunelib-server.json`` names the running server (api_url, pid, database, settings);
    a process that finds it, and gets 200 from its ``/health``, uses it;
  - ``tunelib-server.users``: every process using the server holds a shared ``flock`` on
    it from start until :meth:`ServerHandle.stop` (a launcher takes it before launching).
    The server (``_server_main``) exits once nobody holds it for a second, so it outlives
    its launcher while others use it and goes with its last user, killed or not (the
    kernel drops a dead process's locks). It runs in its own session: a Ctrl-C to one
    experiment's terminal does not stop the server another experiment records into.

  The launch happens in a background thread before this process imports Prefect, so the
  server boots while the driver imports Prefect's client (~2 s of every cold experiment).

The embedded server only has to store what the recorder writes, so the services that act
on runs (schedulers, late-run marking, worker health, automations, ...) are switched off
for it; see ``EMBEDDED_SERVER_ENV`` and bench/prefect_writes.py for what that buys.

Example::

    server = ServerHandle().start()      # returns at once
    api_url = server.wait_ready(120)     # raises when there is no API to record into
    ...
    server.stop()                        # the embedded server goes with its last user
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Dict, NamedTuple, Optional

from tunelib.prefect._where import database_description, prefect_home

if TYPE_CHECKING:
    from tunelib.prefect._caller import CallerRun

log = logging.getLogger("tunelib.prefect.server")

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


# The files by which the processes sharing a PREFECT_HOME share its embedded server.
STARTUP_LOCK_FILE = "tunelib-server.lock"
STATE_FILE = "tunelib-server.json"
USERS_LOCK_FILE = "tunelib-server.users"
SERVER_LOG_FILE = "tunelib-server.log"
# how the server's wrapper finds them (set in its environment)
USERS_LOCK_ENV = "TUNELIB_SERVER_USERS_LOCK"
STATE_FILE_ENV = "TUNELIB_SERVER_STATE_FILE"

# A server that answers this at /health is there: 200, or an auth-protected API (Cloud).
ANSWERING = frozenset({200, 401, 403})
HEALTH_TRIES = 2
HEALTH_TRY_TIMEOUT_S = 1.0
# a process asking for other settings than the running server's waits this long for it to
# go (it does within ~1 s when nobody uses it) before using it as it is
SETTINGS_CHANGE_WAIT_S = 3.0
# the users lock is only ever held exclusively by a server on its way out
USERS_LOCK_TIMEOUT_S = 30.0


class ApiSource(StrEnum):
    """Where the API an experiment records into comes from."""

    EMBEDDED = "embedded"            # tunelib's embedded server of PREFECT_HOME
    ENVIRONMENT = "PREFECT_API_URL"  # PREFECT_API_URL, in the environment or the profile
    ARGUMENT = "api_url"             # the api_url given to ServerHandle (the recorder's)
    CALLER = "caller"                # the API of the flow run fit() was called in


class PrefectServerUnavailable(RuntimeError):
    """No Prefect server answers at the URL the experiment was told to record into."""


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


def health_status(api_url: str, timeout: float) -> Optional[int]:
    """The HTTP status ``<api_url>/health`` answers within ``timeout`` s, or None when
    nothing answers (refused, timed out, no such host). Raises ValueError for a URL that
    is not http(s)."""
    import urllib.error
    import urllib.request

    if not api_url.startswith(("http://", "https://")):
        raise ValueError(f"{api_url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_for_api(api_url: str, process: subprocess.Popen, timeout: float, what: str,
                 hint: str = "", poll_s: float = 0.05) -> None:
    """Wait until ``<api_url>/health`` answers 200; raise when the server ``process`` exits
    first or ``timeout`` seconds pass (``what`` names the server in the message)."""
    suffix = f"; {hint}" if hint else ""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting"
                               + suffix)
        if health_status(api_url, timeout=2) == 200:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {timeout:g} s" + suffix)
        time.sleep(poll_s)


def check_api(api_url: str, source: ApiSource, caller_name: Optional[str] = None) -> None:
    """Raise :class:`PrefectServerUnavailable` unless a Prefect API answers at ``api_url``
    (``HEALTH_TRIES`` tries of ``HEALTH_TRY_TIMEOUT_S``); ``source`` says where the URL
    came from, for the message."""
    if source is ApiSource.CALLER:
        origin = f"the API of the calling flow run{f' {caller_name!r}' if caller_name else ''}"
        fix = "check that the calling flow's server is still running"
    else:
        origin = source.value
        undo = ("unset PREFECT_API_URL" if source is ApiSource.ENVIRONMENT
                else "pass no api_url")
        fix = (f"start one with `prefect server start` or {undo} to use tunelib's embedded "
               "server")
    try:
        for attempt in range(HEALTH_TRIES):
            status = health_status(api_url, HEALTH_TRY_TIMEOUT_S)
            if status is not None:
                break
            if attempt + 1 < HEALTH_TRIES:
                time.sleep(0.1)
    except ValueError as exc:
        raise PrefectServerUnavailable(
            f"{exc} ({origin}): the Prefect API's URL looks like http://127.0.0.1:4200/api; "
            "this experiment is not recorded in Prefect") from None
    if status is None:
        raise PrefectServerUnavailable(
            f"no Prefect server answers at {api_url} ({origin}): {fix}; this experiment is "
            "not recorded in Prefect")
    if status not in ANSWERING:
        raise PrefectServerUnavailable(
            f"the server at {api_url} ({origin}) answers HTTP {status} at /health, so it is "
            "not a Prefect API: the URL should be the API's, ending in /api (such as "
            "http://127.0.0.1:4200/api); this experiment is not recorded in Prefect")


class ServerState(NamedTuple):
    """What ``tunelib-server.json`` says of the running embedded server of a PREFECT_HOME:
    its API, its process and database, and the settings it was launched with (the
    ``EMBEDDED_SERVER_ENV`` defaults the environment did not set)."""

    api_url: str
    pid: int
    database: str
    settings: Dict[str, str]


def read_state(path: str) -> Optional[ServerState]:
    """The state file at ``path``, or None when there is none (or it is not one)."""
    try:
        with open(path) as f:
            return ServerState(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def write_state(path: str, state: ServerState) -> None:
    """Replace the state file at once: a reader sees the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state._asdict(), f)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is


def _lock(path: str, exclusive: bool, timeout: float, waiting_for: str) -> int:
    """Open ``path`` and ``flock`` it (polling, so that ``timeout`` holds); the lock is
    held until the returned descriptor is closed (or the process ends)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(f"waited {timeout:g} s for {waiting_for} (lock {path})") from None
            time.sleep(0.05)


class _EmbeddedServer:
    """Prefect's embedded server (what ``SubprocessASGIServer`` runs: uvicorn on
    ``create_app``, UI off; plus the route that records whole trials, ``_bulk_app``) for the processes sharing ``home``, launched WITHOUT importing
    prefect in this process. ``defaults`` apply where the environment does not set the
    variable. Its output goes to ``<home>/tunelib-server.log``: it may outlive this
    process's terminal and pipes."""

    def __init__(self, home: str, port: int, defaults: Dict[str, str]):
        self.home = home
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.defaults = defaults
        self.log_path = os.path.join(home, SERVER_LOG_FILE)
        self.process: Optional[subprocess.Popen] = None

    def launch(self, skip: frozenset = frozenset()) -> None:
        import importlib.util

        spec = importlib.util.find_spec("prefect")
        app_dir = os.path.dirname(os.path.dirname(spec.origin))
        env = dict(os.environ)
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                     "PREFECT__SERVER_FINAL": "1",
                     USERS_LOCK_ENV: os.path.join(self.home, USERS_LOCK_FILE),
                     STATE_FILE_ENV: os.path.join(self.home, STATE_FILE)})
        for key, value in self.defaults.items():
            if key not in skip:
                env[key] = value
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen(
                # uvicorn under a wrapper that exits when no process uses it any more
                [sys.executable, "-m", "tunelib.prefect._server_main", "--app-dir", app_dir,
                 "--factory", "tunelib.prefect._bulk_app:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "error", "--lifespan", "on"],
                env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float) -> None:
        try:
            wait_for_api(self.api_url, self.process, timeout, "the embedded Prefect server",
                         hint=f"{self._log_tail()}PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_"
                              "SECONDS raises the startup limit")
        except (RuntimeError, TimeoutError):
            self.stop()
            raise

    def _log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path) as f:
                tail = [line.rstrip() for line in f.readlines()[-lines:] if line.strip()]
        except OSError:
            return ""
        return f"its log {self.log_path} ends: {' | '.join(tail)}; " if tail else ""

    def stop(self) -> None:
        """Stop the server this process launched (only while nobody else can use it)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def reap_later(self) -> None:
        """Collect the server's exit status when it ends (after this process stopped using
        it), so that it leaves no zombie behind while this process runs on."""
        if self.process is not None:
            threading.Thread(target=self.process.wait, name="tunelib-prefect-server-reaper",
                             daemon=True).start()
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

    ``wait_ready(timeout)`` blocks until the API answers and returns its URL (raises when
    there is none); ``stop()`` ends this process's use of the embedded server (the server
    itself goes with its last user). ``api_url`` is used as given, with nothing started;
    so is ``caller``'s, the run ``fit()`` was called in (see ``_caller.caller_run()``).
    ``alive()`` says whether it still answers, ``describe()`` names it for messages;
    ``source`` says where it comes from.

    Example::

        server = ServerHandle().start()
        print(server.wait_ready(120), server.describe())
        server.alive()    # True while it answers
        server.stop()
    """

    def __init__(self, api_url: Optional[str] = None, extra_env: Optional[Dict[str, str]] = None,
                 startup_timeout: int = 120, export_env: bool = False,
                 caller: Optional["CallerRun"] = None):
        if api_url and caller is not None:
            raise ValueError(f"ServerHandle got both api_url={api_url!r} and caller="
                             f"{caller!r}: pass one (the caller's flow run has its API)")
        self._caller = caller
        self._extra_env = dict(EMBEDDED_SERVER_ENV if extra_env is None else extra_env)
        self._startup_timeout = startup_timeout
        self._export_env = export_env
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[_EmbeddedServer] = None
        self._users_fd: Optional[int] = None
        self._home = prefect_home()
        self._pid: Optional[int] = None
        # known now, except for a PREFECT_API_URL in the profile (read while booting)
        self.api_url: Optional[str] = None
        self.source = ApiSource.EMBEDDED
        for url, source in ((caller.api_url if caller else None, ApiSource.CALLER),
                            (api_url, ApiSource.ARGUMENT),
                            (os.environ.get("PREFECT_API_URL"), ApiSource.ENVIRONMENT)):
            if url:
                self.api_url, self.source = url, source
                break
        self.embedded = False
        self.error: Optional[BaseException] = None
        self.startup_seconds: Optional[float] = None

    def start(self) -> "ServerHandle":
        self._thread = threading.Thread(target=self._boot, name="tunelib-prefect-server",
                                        daemon=True)
        self._thread.start()
        return self

    def _boot(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.source is ApiSource.EMBEDDED:
                self._use_embedded()
            else:
                self._use_external(self.api_url, self.source)
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready
            self._release()
            self.error = exc
        finally:
            self.startup_seconds = time.perf_counter() - t0
            self._ready.set()

    def _use_external(self, url: str, source: ApiSource) -> None:
        self.source = source
        self.api_url = url
        check_api(url, source, self._caller.flow_run_name if self._caller else None)

    def _use_embedded(self) -> None:
        os.makedirs(self._home, exist_ok=True)
        # the defaults this process asks for: what its environment does not set
        wanted = {k: v for k, v in self._extra_env.items() if k not in os.environ}
        startup = _lock(os.path.join(self._home, STARTUP_LOCK_FILE), True,
                        self._startup_timeout, "another process starting the embedded "
                        f"Prefect server of PREFECT_HOME={self._home}")
        try:
            self._take_users_lock()
            state = self._running_server(wanted)
            if state is None and not self._launch(wanted):
                return
        finally:
            os.close(startup)
        if state is not None:
            # a profile that names a server wins over the shared one, as over a launch
            url = configured_api_url()
            if url:
                self._release()
                self._use_external(url, ApiSource.ENVIRONMENT)
                return
            self.api_url, self._pid = state.api_url, state.pid
        self.embedded = True
        if self._export_env:
            os.environ["PREFECT_API_URL"] = self.api_url

    def _take_users_lock(self) -> None:
        # blocks only while a server on its way out holds it; it is gone when we get it
        self._users_fd = _lock(os.path.join(self._home, USERS_LOCK_FILE), False,
                               USERS_LOCK_TIMEOUT_S, "the embedded Prefect server of "
                               f"PREFECT_HOME={self._home} to stop")

    def _running_server(self, wanted: Dict[str, str]) -> Optional[ServerState]:
        """The shared server, when one runs and answers (the startup lock is held)."""
        state = read_state(os.path.join(self._home, STATE_FILE))
        if state is None or not pid_alive(state.pid) or health_status(state.api_url, 2) != 200:
            return None
        if state.settings == wanted:
            return state
        # launched with other settings (bench/prefect_writes.py's variants): when nobody
        # uses it, it is about to go; else record into it as it is
        self._release()
        deadline = time.monotonic() + SETTINGS_CHANGE_WAIT_S
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._take_users_lock()
        if not pid_alive(state.pid):
            return None
        changed = sorted(k for k in set(state.settings) | set(wanted)
                         if state.settings.get(k) != wanted.get(k))
        log.warning("the embedded Prefect server of PREFECT_HOME=%s runs with other "
                    "settings (%s) for other processes: recording into it as it is",
                    self._home, ", ".join(changed))
        return state

    def _launch(self, wanted: Dict[str, str]) -> bool:
        """Launch the shared server and wait until it answers; False when the Prefect
        profile names a server instead (then used)."""
        # launch first, then import prefect to read the profile: the server boots
        # meanwhile; a profile that names a server or sets one of our defaults (rare)
        # sends us back
        server = _EmbeddedServer(self._home, _free_port(), wanted)
        server.launch()
        self._server = server
        url = configured_api_url()
        if url:
            self._release()
            self._use_external(url, ApiSource.ENVIRONMENT)
            return False
        overridden = frozenset(_profile_settings()) & frozenset(wanted)
        if overridden:
            server.stop()
            server.launch(skip=overridden)
        server.wait_healthy(self._startup_timeout)
        self.api_url, self._pid = server.api_url, server.process.pid
        write_state(os.path.join(self._home, STATE_FILE),
                    ServerState(server.api_url, server.process.pid,
                                database_description(self._home), wanted))
        return True

    def _release(self) -> None:
        """Stop the server this process launched if it is not shared yet, and let go of
        the users lock (the shared server ends once nobody holds it)."""
        if self._server is not None:
            if self.embedded:
                self._server.reap_later()
            else:
                self._server.stop()
            self._server = None
        if self._users_fd is not None:
            os.close(self._users_fd)
            self._users_fd = None

    def wait_ready(self, timeout: Optional[float] = None) -> str:
        if not self._ready.wait(timeout):
            raise TimeoutError("the Prefect API is not up yet")
        if isinstance(self.error, PrefectServerUnavailable):
            raise self.error
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

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether the API still answers (within ``timeout`` s); for the embedded server,
        also whether its process still runs. False before it is ready."""
        if not self.ready or self.api_url is None:
            return False
        if self.embedded and (self._pid is None or not pid_alive(self._pid)):
            return False
        try:
            status = health_status(self.api_url, timeout)
        except ValueError:
            return False
        return status == 200 or (not self.embedded and status in ANSWERING)

    def describe(self) -> str:
        """The server, for messages: which it is and where.

        >>> ServerHandle("http://127.0.0.1:4200/api").describe()
        'the Prefect server at http://127.0.0.1:4200/api (api_url)'
        """
        if self.source is ApiSource.EMBEDDED:
            where = f" at {self.api_url}" if self.api_url else ""
            return (f"the embedded Prefect server{where} (database "
                    f"{database_description(self._home)})")
        if self.source is ApiSource.CALLER:
            return f"the Prefect server of the calling flow run at {self.api_url}"
        return f"the Prefect server at {self.api_url} ({self.source.value})"

    def stop(self) -> None:
        """End this process's use of the server (waits for the start to end first); the
        embedded server stops about a second after its last user stopped. Nothing is
        stopped for a server given by URL."""
        if self._thread is not None:
            self._thread.join(self._startup_timeout + 10)
        self._release()
        if self._export_env and self.embedded and os.environ.get("PREFECT_API_URL") == self.api_url:
            del os.environ["PREFECT_API_URL"]
