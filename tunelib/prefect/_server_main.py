"""Runs the embedded Prefect server (uvicorn) of a PREFECT_HOME, and ends it once no
process uses it: every process recording into it holds a shared ``flock`` on the users
lock file (see ``tunelib.prefect.server``), and the kernel drops the lock of a process
that dies, SIGKILL included. When the lock can be taken exclusively for a second on end,
nobody uses the server: it keeps the lock (a process that comes now waits, then finds no
server and launches a new one), removes the file that names it, and stops.

    python -m tunelib.prefect._server_main <uvicorn arguments>
    (with server.USERS_LOCK_ENV and server.STATE_FILE_ENV naming the users lock and the
    file that names the running server)
"""

import json
import os
import signal
import sys
import threading
import time

from tunelib.prefect.server import STATE_FILE_ENV, USERS_LOCK_ENV

POLL_S = 0.2
IDLE_S = 1.0  # nobody for this long: stop
STOP_GRACE_S = 15.0  # uvicorn's own shutdown, then exit regardless


def exit_when_unused(users_lock: str, state_file: str) -> None:
    """Stop this server (SIGTERM to itself: uvicorn shuts down cleanly) once nobody has
    held ``users_lock`` for ``IDLE_S``; forget ``state_file`` first if it names us."""
    import fcntl

    fd = os.open(users_lock, os.O_RDWR | os.O_CREAT, 0o644)
    idle_since = None
    while True:
        time.sleep(POLL_S)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            idle_since = None
            continue
        now = time.monotonic()
        idle_since = now if idle_since is None else idle_since
        if now - idle_since < IDLE_S:
            fcntl.flock(fd, fcntl.LOCK_UN)
            continue
        break
    _forget(state_file)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_S)
    os._exit(0)


def _forget(state_file: str) -> None:
    try:
        with open(state_file) as f:
            names_us = json.load(f).get("pid") == os.getpid()
        if names_us:
            os.remove(state_file)
    except (OSError, ValueError, AttributeError):
        pass


def main() -> None:
    threading.Thread(target=exit_when_unused, name="tunelib-server-users",
                     args=(os.environ[USERS_LOCK_ENV], os.environ[STATE_FILE_ENV]),
                     daemon=True).start()
    from uvicorn.main import main as uvicorn_main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
