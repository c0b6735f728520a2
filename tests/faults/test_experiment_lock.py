"""The experiment dir lock (issue 14, item 5), in milliseconds: one holder at a time, in
this process or another; released by the kernel when its holder dies; an experiment that
raised before releasing it does not keep its name from the next one in its thread."""

import os
import subprocess
import sys
import textwrap
import threading

import pyarrow.fs as pafs
import pytest

from tunelib._experiment_lock import ExperimentInUseError, hold_experiment_dir

FS = pafs.LocalFileSystem()


def _hold(path):
    return hold_experiment_dir(FS, str(path), str(path))


def test_a_held_dir_is_refused_to_another_thread_with_what_to_do(tmp_path):
    lock = _hold(tmp_path)
    failures = []

    def other():
        try:
            _hold(tmp_path)
        except ExperimentInUseError as exc:
            failures.append(str(exc))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    [message] = failures
    assert repr(str(tmp_path)) in message and f"pid {os.getpid()}" in message
    assert "another name" in message and "resume=True" in message
    lock.release()
    _hold(tmp_path).release()  # free again


def test_a_lock_held_by_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        import pyarrow.fs as pafs
        from tunelib._experiment_lock import hold_experiment_dir
        lock = hold_experiment_dir(pafs.LocalFileSystem(), {str(tmp_path)!r}, "exp")
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExperimentInUseError, match=f"pid {holder.pid} on "):
            _hold(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    _hold(tmp_path).release()


def test_a_lock_left_by_an_experiment_that_raised_is_taken_over_in_its_thread(tmp_path):
    leaked = _hold(tmp_path)  # as if fit() raised and its traceback kept the lock alive
    lock = _hold(tmp_path)
    lock.release()
    leaked.release()  # harmless afterwards
    _hold(tmp_path).release()
