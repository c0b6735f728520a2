"""kill -9 of the driver: its workers go with it, and the experiment resumes to the answer
of an uninterrupted run with nothing lost (issue 14, items 3 and 6). Each restore also
shows that the killed driver left no lock on the experiment (item 5).

Ray 2.60 writes tuner.pkl when the experiment starts and its experiment state every few
seconds; trials created after the last save are started over after a crash (Ray loses
them too). tunelib goes further: the state is saved before a new trial starts, so every
trial continues in its own dir from its latest checkpoint; the rows a trial wrote after
the last save are found on storage.
"""

import json
import os
import pickle

import pytest
from _crash_helpers import (  # noqa: F401 (no_driver_left: an autouse fixture)
    BEST_X,
    ITERS,
    QUIET,
    XS,
    Driver,
    assert_complete,
    assert_gone,
    assert_nothing_lost,
    assert_same_answer,
    no_driver_left,
    read_ledger,
    restore_and_fit,
    resume_with_tune_run,
    state_statuses,
    trial_dirs,
    wait_until,
)

pytestmark = pytest.mark.slow

TOTAL_ROWS = ITERS * len(XS)


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)


def _plant_connection_errors(exp_dir):
    for d in trial_dirs(exp_dir):
        with open(os.path.join(d, "error.txt"), "w") as f:
            f.write("Failure # 1\nConnectionResetError: [Errno 104] Connection reset by peer\n")
        with open(os.path.join(d, "error.pkl"), "wb") as f:
            pickle.dump(ConnectionResetError(104, "Connection reset by peer"), f)


def _assert_no_error_files(exp_dir):
    for d in trial_dirs(exp_dir):
        assert not os.path.exists(os.path.join(d, "error.txt")), f"{d}: a dead driver's error"


@pytest.mark.parametrize("moment,rows,api", [
    # the first trials have just written their first rows: they started less than a
    # second ago (they were redone from scratch in new dirs before)
    ("just-started", 2, "tuner"),
    # the first two trials are done or nearly, the next two just started
    ("second-wave", TOTAL_ROWS // 2 + 2, "run"),
    # the last trials are writing their last rows
    ("near-the-end", TOTAL_ROWS - 3, "tuner"),
])
def test_kill_9_of_the_driver_then_resume(tmp_path, moment, rows, api):
    driver = Driver(tmp_path, api=api)
    driver.wait_for_rows(rows)
    driver.kill()  # and its workers are gone within 2 s
    _assert_no_error_files(driver.exp_dir)  # they died with it, without a word
    assert_nothing_lost(driver.exp_dir, driver.ledger)
    # every trial that wrote a file is in the state, with its dir
    statuses = state_statuses(driver.exp_dir)
    started = {json.load(open(os.path.join(d, "params.json")))["x"]
               for d in trial_dirs(driver.exp_dir)}
    assert started <= set(statuses)
    # what a worker that outlived its driver wrote on a system without the parent-death
    # signal (and tunelib's workers did before): the broken connection as the trial's
    # error; the trials complete, so it must not stay (Result.from_path(...).error)
    _plant_connection_errors(driver.exp_dir)

    if api == "run":
        analysis = resume_with_tune_run(driver)
        assert analysis.best_config["x"] == BEST_X
    else:
        assert_same_answer(restore_and_fit(driver.exp_dir))
    assert_complete(driver.exp_dir, driver.ledger)


def test_restore_after_a_crash_keeps_the_run_and_tune_configs(tmp_path):
    """Item 3: tuner.pkl is written when the experiment starts (as Ray does), so the
    restored run stops at 12 iterations, keeps 2 checkpoints and knows metric and mode."""
    driver = Driver(tmp_path, stop={"training_iteration": 12}, num_to_keep=2)
    driver.wait_for_rows(6)
    assert os.path.exists(os.path.join(driver.exp_dir, "tuner.pkl"))
    driver.kill()

    grid = restore_and_fit(driver.exp_dir)  # no config passed again
    best = grid.get_best_result()           # metric and mode from tuner.pkl
    assert best.config["x"] == BEST_X
    assert sorted(r.metrics["training_iteration"] for r in grid) == [12] * len(XS)
    for d in trial_dirs(driver.exp_dir):
        kept = [n for n in os.listdir(d) if n.startswith("checkpoint_") and "." not in n]
        assert len(kept) <= 2, f"{d}: {kept}"
    assert_complete(driver.exp_dir, driver.ledger, iters=12, keep=2)


def test_a_worker_stuck_in_c_code_dies_with_its_driver(tmp_path):
    """The worker's trainable is in a C call that holds the GIL for a minute (no Python
    thread of the worker can run): the kernel's parent-death signal ends it."""
    driver = Driver(tmp_path, space={"hold_gil_s": 60})
    wait_until(lambda: all(read_ledger(driver.ledger, x) for x in XS[:2]), timeout=60,
               what="the first trials to start")
    pids = [read_ledger(driver.ledger, x)[0]["pid"] for x in XS[:2]]
    driver.proc.kill()
    driver.wait()
    assert_gone(pids, within_s=2.0)
