"""Ctrl-C and SIGTERM stop an experiment resumably (issue 14, item 1).

Ray 2.60, observed side by side: the first SIGINT ends ``Tuner.fit()`` gracefully: it
logs "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run...", saves the
experiment state with the running trials RUNNING, logs "Experiment has been interrupted,
but the most recent state was saved. Resume experiment with: Tuner.restore(path=...,
trainable=...)" and returns the ResultGrid of what ran (trials at their latest iteration,
no errors); the script exits 0. A second SIGINT raises KeyboardInterrupt out of ``fit()``.
SIGTERM: Ray's driver raises SystemExit(1) at once and aborts (exit 134), saving nothing
more than its periodic state.

tunelib does the same for SIGINT, and goes further for SIGTERM (a batch scheduler's
stop): state saved, hint printed, then the signal ends the process as it would have. A
SIGTERM handler already set (Prefect's in a flow run, which turns Cancel into an
exception) is left in place; its exception stops the experiment just as resumably. Every
case resumes to the answer of an uninterrupted run.
"""

import signal
import time

import pytest
from _crash_helpers import (  # noqa: F401 (no_driver_left: an autouse fixture)
    BEST_X,
    ITERS,
    QUIET,
    Driver,
    assert_complete,
    assert_nothing_lost,
    assert_same_answer,
    no_driver_left,
    restore_and_fit,
    state_statuses,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)


def _assert_saved_resumable(driver):
    """The trials that ran when the signal came are saved unfinished, not TERMINATED."""
    statuses = state_statuses(driver.exp_dir)
    assert set(statuses.values()) - {"TERMINATED"}, statuses
    assert all(s in ("RUNNING", "PENDING", "TERMINATED") for s in statuses.values()), statuses
    assert_nothing_lost(driver.exp_dir, driver.ledger)


def _hint(driver) -> str:
    lines = [line for line in driver.output.splitlines() if "Resume experiment with" in line]
    assert len(lines) == 1, driver.output
    return lines[0]


def test_first_ctrl_c_returns_the_results_so_far_and_the_run_resumes(tmp_path):
    driver = Driver(tmp_path)
    driver.wait_for_rows(12)
    driver.signal(signal.SIGINT)
    assert driver.wait() == 0  # fit() returned, as in Ray
    result = driver.result()
    assert all(t["error"] is None for t in result["trials"])
    assert any(t["iteration"] < ITERS for t in result["trials"])
    assert (f'Experiment has been interrupted (SIGINT), but the most recent state was saved. '
            f'Resume experiment with: Tuner.restore(path="{driver.exp_dir}", trainable=...)'
            ) in _hint(driver)
    _assert_saved_resumable(driver)

    grid = restore_and_fit(driver.exp_dir)
    assert_same_answer(grid)
    assert_complete(driver.exp_dir, driver.ledger)


def test_second_ctrl_c_stops_at_once_and_stays_resumable(tmp_path):
    driver = Driver(tmp_path, slow_end_s=60)  # a final step that would take a minute
    driver.wait_for_rows(12)
    driver.signal(signal.SIGINT)
    wait_until(lambda: "EXPERIMENT END" in driver.output, what="the graceful stop")
    started = time.monotonic()
    driver.signal(signal.SIGINT)
    code = driver.wait()
    assert time.monotonic() - started < 10
    # KeyboardInterrupt out of fit(), as in Ray (Python then ends by SIGINT)
    assert code == -signal.SIGINT and "KeyboardInterrupt" in driver.output, driver.output
    assert_nothing_lost(driver.exp_dir, driver.ledger)

    grid = restore_and_fit(driver.exp_dir)
    assert_same_answer(grid)
    assert_complete(driver.exp_dir, driver.ledger)


def test_sigterm_saves_then_ends_the_process_and_tune_run_resumes(tmp_path):
    """Ray aborts on SIGTERM; tunelib first saves and drains, then lets the signal end the
    process (exit by SIGTERM), with the same one-line hint (tune.run's)."""
    from _crash_helpers import resume_with_tune_run

    driver = Driver(tmp_path, api="run")
    driver.wait_for_rows(12)
    driver.signal(signal.SIGTERM)
    assert driver.wait() == -signal.SIGTERM
    assert "Resume experiment with: tune.run(..., resume=True)" in _hint(driver)
    _assert_saved_resumable(driver)

    analysis = resume_with_tune_run(driver)
    assert analysis.best_config["x"] == BEST_X
    assert_complete(driver.exp_dir, driver.ledger)


def test_a_sigterm_handler_already_set_is_left_to_stop_the_experiment(tmp_path):
    """Inside a Prefect flow run, Prefect's SIGTERM handler turns Cancel into an exception
    (here a stand-in handler): tunelib leaves it in place; its exception stops the
    experiment, which is saved resumably, hinted at, and the exception reaches the caller."""
    driver = Driver(tmp_path, term_handler=True)
    driver.wait_for_rows(12)
    driver.signal(signal.SIGTERM)
    assert driver.wait() == 3, driver.output  # the handler's exception left fit()
    output = driver.output
    assert output.index("Resume experiment with") < output.index("CANCELLED")
    _assert_saved_resumable(driver)
