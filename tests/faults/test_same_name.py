"""Two experiments of one name: the second fails at once, naming the directory and what to
do; the first is unaffected (issue 14, item 5). Ray has no such guard: two of its
drivers on one directory receive each other's results. (A killed driver leaves no lock
behind: every restore in test_driver_crash.py takes it.)"""

import os

import pytest
from _crash_helpers import (  # noqa: F401 (no_driver_left: an autouse fixture)
    ITERS,
    NAME,
    QUIET,
    XS,
    Driver,
    assert_complete,
    counting,
    no_driver_left,
    space,
)

from tunelib import tune
from tunelib._experiment_lock import ExperimentInUseError

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)


def _second(driver, **kw):
    return tune.Tuner(counting, param_space=space(driver.ledger + "-second", **kw),
                      run_config=tune.RunConfig(name=NAME, storage_path=driver.storage,
                                                verbose=0))


def test_a_second_experiment_of_the_same_name_fails_at_once(tmp_path):
    gate = str(tmp_path / "gate")
    driver = Driver(tmp_path, space={"gate": gate})  # its trials wait at step 3 ...
    driver.wait_for_rows(4)
    os.makedirs(driver.ledger + "-second")
    tuner_pkl = os.path.join(driver.exp_dir, "tuner.pkl")
    before = os.stat(tuner_pkl).st_mtime_ns
    # at once: the first one is held at step 3 until the second has given up
    with pytest.raises(ExperimentInUseError) as info:
        _second(driver).fit()
    message = str(info.value)
    assert repr(driver.exp_dir) in message and f"pid {driver.proc.pid}" in message
    assert "another name" in message and "Tuner.restore(" in message
    with pytest.raises(ExperimentInUseError):  # resuming it meanwhile: the same
        tune.run(counting, name=NAME, storage_path=driver.storage, resume=True,
                 config=space(driver.ledger), verbose=0)
    assert os.stat(tuner_pkl).st_mtime_ns == before

    open(gate, "w").close()  # ... until the second one has been refused
    assert driver.wait() == 0, driver.output
    trials = driver.result()["trials"]  # the first one's own results, complete
    assert sorted(t["x"] for t in trials) == XS
    assert all(t["iteration"] == ITERS and t["error"] is None for t in trials)
    assert_complete(driver.exp_dir, driver.ledger)
    assert not os.listdir(driver.ledger + "-second")  # not one step of the second ran


def test_an_experiment_that_raised_does_not_hold_its_name(tmp_path):
    """In one process (a notebook): the next fit() of that name runs."""
    storage = str(tmp_path / "results")
    ledger = str(tmp_path / "ledger")
    os.makedirs(ledger)

    def run(metric):
        return tune.Tuner(counting, param_space=space(ledger, xs=[0.5], iters=2, sleep=0.0),
                          tune_config=tune.TuneConfig(metric=metric, mode="max"),
                          run_config=tune.RunConfig(name="again", storage_path=storage,
                                                    verbose=0)).fit()

    with pytest.raises(Exception, match="did not include the metric"):
        run("no-such-metric")
    assert run("score")[0].metrics["training_iteration"] == 2
