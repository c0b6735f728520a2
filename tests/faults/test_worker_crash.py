"""kill -9 of a worker process: its trial fails (max_failures=0) or is retried from its
latest checkpoint (max_failures=2); the other trials and the answer are unaffected and
nothing reported is lost. Ray does the same with a killed trial actor."""

import os
import signal

import pytest
from _crash_helpers import (  # noqa: F401 (no_driver_left: an autouse fixture)
    BEST_X,
    ITERS,
    XS,
    Driver,
    assert_complete,
    assert_nothing_lost,
    no_driver_left,
    read_ledger,
    score,
    trial_dirs,
    wait_until,
)

pytestmark = pytest.mark.slow


def _kill_worker_of(driver, x, after_iterations=5):
    def progressed():
        return sum("iteration" in e for e in read_ledger(driver.ledger, x)) >= after_iterations

    wait_until(progressed, timeout=90, what=f"trial x={x} to run {after_iterations} steps")
    pid = [e for e in read_ledger(driver.ledger, x) if e.get("event") == "start"][-1]["pid"]
    os.kill(pid, signal.SIGKILL)


def test_a_killed_worker_fails_its_trial_without_retries(tmp_path):
    driver = Driver(tmp_path, max_failures=0)
    _kill_worker_of(driver, 0.1)
    assert driver.wait() == 0, driver.output
    trials = {t["x"]: t for t in driver.result()["trials"]}
    assert trials[0.1]["error"] is not None and trials[0.1]["iteration"] < ITERS
    assert all(t["error"] is None and t["iteration"] == ITERS
               for x, t in trials.items() if x != 0.1)
    assert_nothing_lost(driver.exp_dir, driver.ledger, all_started=True)
    [failed] = [d for d in trial_dirs(driver.exp_dir) if "x=0.1000" in d]
    with open(os.path.join(failed, "error.txt")) as f:
        assert "died" in f.read()
    # the best config is the one an uninterrupted run finds (the killed trial was not it)
    best = max((t for t in trials.values() if t["error"] is None),
               key=lambda t: score(t["x"], t["iteration"]))
    assert best["x"] == BEST_X


def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    driver = Driver(tmp_path, max_failures=2)
    _kill_worker_of(driver, BEST_X)  # the best trial: it must still end best
    assert driver.wait() == 0, driver.output
    trials = driver.result()["trials"]
    assert all(t["error"] is None and t["iteration"] == ITERS for t in trials)
    starts = [e for e in read_ledger(driver.ledger, BEST_X) if e.get("event") == "start"]
    assert len(starts) == 2 and starts[1]["from"] > 0  # from its checkpoint, not from 0
    # its error.txt tells of the failure that was retried (Ray keeps it too)
    assert_complete(driver.exp_dir, driver.ledger, xs=XS, failed_xs=(BEST_X,))
