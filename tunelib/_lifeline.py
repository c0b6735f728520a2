"""Ends a helper process (a worker, the embedded Prefect server) when the driver that
started it is gone, even if the driver was killed with SIGKILL and could not clean up.

Two mechanisms. On Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG,
SIGKILL)``) kills the process the moment its parent dies, whatever it is doing: a trainable
stuck in a C call that holds the GIL cannot be stopped by Python code. The kernel sends it
when the *thread* that started the process exits, so it is only for processes started by a
thread that outlives them (``kernel_signal=True``). Everywhere, a daemon thread also
polls the parent pid, for other systems and for processes that cannot use the signal.
"""

import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(parent_pid: int, period_s: float = 1.0, kernel_signal: bool = False) -> None:
    """Exit this process once ``parent_pid`` is no longer its parent (the parent died and
    the process was re-parented).

    With ``kernel_signal`` (Linux), the kernel also SIGKILLs this process when the thread
    that started it ends; use it only where that thread lives as long as the process
    should (the local executor's workers), never for a process started from a short-lived
    thread.

    Example::

        exit_with_parent(os.getppid(), kernel_signal=True)   # first thing in a worker
    """
    if kernel_signal:
        _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(0)

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(period_s)

    threading.Thread(target=watch, name="tunelib-lifeline", daemon=True).start()


def _set_parent_death_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where there is no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
