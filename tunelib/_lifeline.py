"""Ends a helper process (a worker, the embedded Prefect server) when the driver that
started it is gone, even if the driver was killed with SIGKILL and could not clean up."""

import os
import threading
import time


def exit_with_parent(parent_pid: int, period_s: float = 1.0) -> None:
    """Start a daemon thread that exits this process once ``parent_pid`` is no longer its
    parent (the parent died and the process was re-parented)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(period_s)

    threading.Thread(target=watch, name="tunelib-lifeline", daemon=True).start()
