"""A trial attempt's working directory and output files, with Ray's semantics.

Ray runs every trial, function or class, in a directory of its own, so that concurrent
trials writing files by relative path do not collide. A worker, for each attempt:

* changes into the trial's working directory (``Trainable.logdir``) and back to where it
  was when the attempt ends (workers are reused across trials). The environment variable
  ``RAY_CHDIR_TO_TRIAL_DIR=0`` keeps trials in the worker's (the driver's) directory;
* sets ``TUNE_ORIG_WORKING_DIR`` to that original directory (when not already set);
* with ``log_to_file``, copies the attempt's stdout and stderr into files there
  (``log_file_names`` reads the setting).

The working directory is the trial's directory on storage when storage is the local disk.
Otherwise (``s3://``, ``memory://``...) it is a local staging directory,
``<tempdir>/tunelib-<uid>/working_dirs/<experiment>/<trial dir>``, as Ray stages trial
files in ``/tmp/ray/session_*/.../working_dirs``; tunelib does not upload what a trial
writes there (Ray uploads it only with ``SyncConfig(sync_artifacts=True)``).

Example::

    with in_working_dir("/results/exp/trial_1"), output_to_files("/results/exp/trial_1",
                                                                 "stdout", "stderr"):
        trainable(config)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Iterator, List, Optional, Tuple

CHDIR_ENV = "RAY_CHDIR_TO_TRIAL_DIR"
ORIG_WORKING_DIR_ENV = "TUNE_ORIG_WORKING_DIR"
# Ray's file names for log_to_file=True (ray.tune.experiment.experiment)
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"
# how long the end of an attempt waits for its output to reach the files; longer only
# when a process the trial started still holds its stdout
_DRAIN_TIMEOUT_S = 5.0

LogFiles = Tuple[Optional[str], Optional[str]]


def log_file_names(log_to_file) -> LogFiles:
    """``RunConfig(log_to_file=...)`` as (stdout file, stderr file), names relative to the
    trial's working directory; None: that stream is not written to a file.

    Ray's rules: False → neither; True → ``stdout`` and ``stderr``; a string → both
    streams to that one file; a pair → (stdout file, stderr file).

    Example::

        >>> log_file_names(True)
        ('stdout', 'stderr')
        >>> log_file_names("trial.log")
        ('trial.log', 'trial.log')
    """
    if not log_to_file:
        return None, None
    if log_to_file is True:
        return STDOUT_FILE, STDERR_FILE
    if isinstance(log_to_file, (str, os.PathLike)):
        return os.fspath(log_to_file), os.fspath(log_to_file)
    if isinstance(log_to_file, Sequence) and len(log_to_file) == 2 and all(
            name is None or isinstance(name, (str, os.PathLike)) for name in log_to_file):
        out, err = log_to_file
        return (os.fspath(out) if out else None), (os.fspath(err) if err else None)
    raise ValueError(
        "`log_to_file` must be True, False, a file name (both streams to it) or a "
        f"(stdout file, stderr file) pair, got {log_to_file!r}."
    )


def staging_dir(experiment_name: str, trial_dirname: str) -> str:
    """The local working directory of a trial whose storage is not the local disk."""
    root = os.path.join(tempfile.gettempdir(), f"tunelib-{os.getuid()}", "working_dirs")
    return os.path.join(root, experiment_name, trial_dirname)


def chdir_enabled() -> bool:
    """False when ``RAY_CHDIR_TO_TRIAL_DIR`` is 0 (Ray's opt-out; also false/no/off)."""
    return os.environ.get(CHDIR_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def in_working_dir(working_dir: str) -> Iterator[str]:
    """Create ``working_dir`` and run the attempt in it; back to the previous directory
    afterwards, whatever happens."""
    os.makedirs(working_dir, exist_ok=True)
    home = os.getcwd()
    os.environ.setdefault(ORIG_WORKING_DIR_ENV, home)
    if chdir_enabled():
        os.chdir(working_dir)
    try:
        yield working_dir
    finally:
        os.chdir(home)


@contextlib.contextmanager
def output_to_files(working_dir: str, stdout_file: Optional[str],
                    stderr_file: Optional[str]) -> Iterator[None]:
    """Copy this process's stdout (fd 1) and stderr (fd 2) into files for the duration.

    At the file-descriptor level, so output of C code and child processes is caught too;
    it still reaches the console, as with Ray's ``Tee``. Files are appended to (a retried
    or resumed trial adds to them) and named relative to ``working_dir`` (absolute names
    are kept). A file that cannot be opened fails the attempt, as in Ray.
    """
    copies: List[_FdCopy] = []
    try:
        for fd, name in ((1, stdout_file), (2, stderr_file)):
            if name:
                copies.append(_FdCopy(fd, os.path.join(working_dir, name)))
        yield
    finally:
        for copy in reversed(copies):
            copy.close()


class _FdCopy:
    """Points ``fd`` at a ``tee`` process that writes to ``path`` and to what ``fd`` was.

    A separate process, not a thread: a thread drains the pipe only when it gets the GIL,
    and C code that prints while holding the GIL would fill the pipe and hang. Without a
    ``tee`` program, ``fd`` goes to the file alone.
    """

    def __init__(self, fd: int, path: str):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        open(path, "a").close()  # fail here, with the path in the error, not in tee
        _flush()
        self.fd = fd
        self.saved = os.dup(fd)
        self.proc: Optional[subprocess.Popen] = None
        tee = shutil.which("tee")
        if tee is None:
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        else:
            read_end, target = os.pipe()
            try:
                # -i: a Ctrl-C sent to the process group must not cut the trial's output
                self.proc = subprocess.Popen([tee, "-a", "-i", path], stdin=read_end,
                                             stdout=self.saved)
            except BaseException:
                os.close(target)
                os.close(self.saved)
                raise
            finally:
                os.close(read_end)
        os.dup2(target, fd)
        os.close(target)

    def close(self) -> None:
        _flush()
        os.dup2(self.saved, self.fd)  # our last hold on the pipe: tee sees its end
        os.close(self.saved)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=_DRAIN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass  # a child of the trial keeps writing; tee ends with it


def _flush() -> None:
    """Flush Python's and C's buffers of stdout and stderr, so that what was written before
    the fds are switched lands where it was meant to."""
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__,
                                      sys.__stderr__) if s is not None}.values():
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
