"""One driver per experiment directory: a second experiment of the same name fails at once.

Two experiments writing one directory receive each other's trials and results (their
state files, trial dirs and ``tuner.pkl`` mix). The driver that runs (or resumes) an
experiment holds a lock on it until the experiment ends:

* on a local (or NFS-mounted) disk, an ``flock`` on ``<experiment>/.tunelib-driver.lock``:
  the kernel releases it when the driver's process ends, however it ends (kill -9
  included), so a crashed driver never leaves the experiment stuck. The file stays, with
  the holder's pid, host and start time in it, for the error message;
* on other storage (``s3://``, ``memory://``), only experiments of this process are
  excluded.

Ray has no such lock (two Ray drivers on one directory mix their results silently).

Example::

    lock = hold_experiment_dir(fs, experiment_path, "/results/exp")   # raises if held
    try:
        ...  # run the experiment
    finally:
        lock.release()
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Dict, Optional

from tunelib.error import TuneError

LOCK_FILE = ".tunelib-driver.lock"

_held: Dict[str, "ExperimentLock"] = {}   # this process's locks, by experiment uri
_held_guard = threading.Lock()


class ExperimentInUseError(TuneError):
    """Another driver is running (or resuming) the experiment in this directory."""


class ExperimentLock:
    """Held while an experiment runs; ``release()`` is idempotent."""

    def __init__(self, key: str, fd: Optional[int]):
        self._key = key
        self._fd = fd
        self._thread = threading.get_ident()

    def release(self) -> None:
        with _held_guard:
            if _held.get(self._key) is self:
                del _held[self._key]
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def __del__(self) -> None:  # an experiment that raised before it could release
        try:
            self.release()
        except Exception:
            pass


def hold_experiment_dir(fs, experiment_path: str, experiment_uri: str) -> ExperimentLock:
    """Lock the experiment dir for this driver, or raise ``ExperimentInUseError`` at once,
    naming the dir, the holder and what to do."""
    from tunelib import storage

    with _held_guard:
        other = _held.get(experiment_uri)
        if other is not None and other._thread == threading.get_ident():
            # this thread cannot be running another experiment: one that raised before it
            # released its lock (the traceback still holds it)
            del _held[experiment_uri]
            other._close()
        elif other is not None:
            raise _in_use(experiment_uri, f"another experiment of this process (pid "
                                          f"{os.getpid()})")
        fd = None
        if storage.is_local(fs):
            fd = _flock(os.path.join(experiment_path, LOCK_FILE), experiment_uri)
        lock = _held[experiment_uri] = ExperimentLock(experiment_uri, fd)
        return lock


def _flock(path: str, experiment_uri: str) -> Optional[int]:
    try:
        import fcntl
    except ImportError:  # not a POSIX system: this process's experiments only
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise _in_use(experiment_uri, holder) from None
    except OSError:  # a filesystem without locks: this process's experiments only
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    return fd


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"the driver with pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another driver"


def _in_use(experiment_uri: str, holder: str) -> ExperimentInUseError:
    return ExperimentInUseError(
        f"The experiment directory {experiment_uri!r} is in use by {holder}. Two experiments "
        "with one name would receive each other's results. Give this one another name "
        "(RunConfig(name=...) / tune.run(name=...)), or, once the other has ended, continue "
        f"it with Tuner.restore(path={experiment_uri!r}, trainable=...) or "
        "tune.run(..., resume=True)."
    )
