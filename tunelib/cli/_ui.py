"""``tunelib ui``: the Prefect UI on the database the experiments were recorded in.

Experiments record into the server ``PREFECT_API_URL`` names when it is set (environment
or Prefect profile): that server already serves the UI, so its address is all there is to
print. Otherwise they record into the SQLite database under ``PREFECT_HOME``, through an
embedded server that stops with the experiment; ``tunelib ui`` then runs ``prefect server
start`` (UI on) on that database as a subprocess in its own process group, and stops it
on Ctrl-C or SIGTERM. This process never imports Prefect's server.

Example::

    $ tunelib ui
    Prefect UI: http://127.0.0.1:53817
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Callable, List, Optional

# one definition each, shared with fit()'s "where to look" line
from tunelib.prefect._where import database_description, ui_url

__all__ = ["ServerError", "configured_api_url", "database_description", "free_port",
           "port_is_free", "serve", "server_command", "ui_url"]

DEFAULT_HOST = "127.0.0.1"
# a first start on a fresh database runs Prefect's migrations: tens of seconds on a busy host
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """``prefect server start`` exited or did not answer in time."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def server_command(host: str, port: int) -> List[str]:
    """``prefect server start`` with the UI, on ``host:port``, by this Python."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host,
            "--port", str(port), "--ui"]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it was started in its own), then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve(command: List[str], host: str, port: int, *, announce: Callable[[str, str], None],
          timeout: float = START_TIMEOUT_S) -> int:
    """Run the server ``command``, call ``announce(ui_url, api_url)`` once it answers, and
    wait for it to exit (its exit code). Ctrl-C stops it and returns 130; SIGTERM stops it
    and exits 143.

    Raises:
        ServerError: it exited while starting, or did not answer within ``timeout`` s.
    """
    from tunelib.prefect.server import wait_for_api

    api_url = f"http://{host}:{port}/api"
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # as the embedded server
    # The UI finds its API from these settings (unless PREFECT_UI_API_URL is set); the
    # --host/--port arguments alone leave it calling the default port 4200.
    env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port))
    # its banner goes nowhere (the address is printed here); its errors stay on stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = None
    if on_main_thread:
        # SIGTERM unwinds through `finally`, so the server is not left running
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        try:
            wait_for_api(api_url, process, timeout, "`prefect server start`",
                         hint=f"command: {' '.join(command)}", poll_s=0.25)
        except (RuntimeError, TimeoutError) as exc:
            raise ServerError(str(exc)) from None
        announce(f"http://{host}:{port}", api_url)
        return process.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(process)
        if on_main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def configured_api_url() -> Optional[str]:
    """The server experiments record into when one is configured (``PREFECT_API_URL`` in
    the environment or the Prefect profile), else None."""
    from tunelib.prefect.server import configured_api_url as configured

    return configured()
