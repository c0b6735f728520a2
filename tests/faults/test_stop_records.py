"""What Prefect shows of an interrupted and of a resumed experiment (issue 14, items 1, 6):
no run is left Running, and nothing is missing from the records.

Ray has no Prefect records; tunelib closes the runs of an interrupted experiment (its
unfinished trials are recorded stopped, "interrupted", resumable) and a resumed experiment
that has nothing left to run records a run that completes at once.
"""

import asyncio
import signal
import warnings

import pytest
from _crash_helpers import (  # noqa: F401 (no_driver_left: an autouse fixture)
    QUIET,
    Driver,
    assert_nothing_lost,
    counting,
    no_driver_left,
    space,
    state_statuses,
)

from tunelib import tune

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


async def _runs(api_url, name):
    """(flow name, state type, state message) of every flow run tagged ``name``."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async with PrefectClient(api=api_url) as client:
        runs = await client.read_flow_runs(
            limit=200, flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[name])))
        flows = {}
        out = []
        for run in runs:
            if run.flow_id not in flows:
                flows[run.flow_id] = (await client.read_flow(run.flow_id)).name
            out.append((flows[run.flow_id], run.state.type.value, run.state.message or ""))
        return out


class StopAll(tune.Stopper):
    """A stopper that ends the experiment at once (Ray's ``Stopper.stop_all``)."""

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return True


def test_an_interrupted_experiment_leaves_no_run_running(prefect_server, tmp_path):
    driver = Driver(tmp_path, prefect=True, name="interrupted-rec")
    driver.wait_for_rows(12, timeout=180)
    driver.signal(signal.SIGINT)
    assert driver.wait(timeout=180) == 0, driver.output
    assert "Prefect has not recorded everything" not in driver.output
    runs = asyncio.run(_runs(prefect_server, "interrupted-rec"))
    assert [r for r in runs if r[0] == "experiment"]
    assert not [r for r in runs if r[1] in ("RUNNING", "PENDING", "SCHEDULED")], runs
    interrupted = [r for r in runs if r[0] == "trial" and "interrupted (SIGINT)" in r[2]]
    assert interrupted, runs


def test_sigterm_to_a_prefect_flow_running_an_experiment(prefect_server, tmp_path):
    """What Prefect's runner sends on Cancel: SIGTERM. Prefect's own handler stays in
    charge of the flow run; the experiment under it is saved resumably and its runs closed."""
    driver = Driver(tmp_path, prefect=True, name="cancelled-rec", in_flow=True)
    driver.wait_for_rows(12, timeout=180)
    driver.signal(signal.SIGTERM)
    assert driver.wait(timeout=180) == -signal.SIGTERM, driver.output
    assert "Resume experiment with" in driver.output
    statuses = state_statuses(driver.exp_dir)
    assert set(statuses.values()) - {"TERMINATED"}, statuses
    assert_nothing_lost(driver.exp_dir, driver.ledger)
    runs = asyncio.run(_runs(prefect_server, "cancelled-rec"))
    assert not [r for r in runs if r[1] in ("RUNNING", "PENDING", "SCHEDULED")], runs


def test_a_resumed_experiment_with_nothing_left_to_run_is_recorded(prefect_server, tmp_path,
                                                                   monkeypatch):
    """The trials of the interrupted run end without running again (a stopper ends the
    experiment at once): they have no run in this one to close, and none is Running."""
    driver = Driver(tmp_path, name="resumed-rec")
    driver.wait_for_rows(8)
    driver.signal(signal.SIGINT)
    assert driver.wait() == 0
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "0")
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "Prefect has not recorded ..."
        tune.run(counting, name="resumed-rec", storage_path=driver.storage, resume=True,
                 config=space(driver.ledger), stop=StopAll(), verbose=0)
        tune.run(counting, name="resumed-rec", storage_path=driver.storage, resume=True,
                 config=space(driver.ledger), verbose=0)  # everything finished: nothing to run
    runs = asyncio.run(_runs(prefect_server, "resumed-rec"))
    experiments = [r for r in runs if r[0] == "experiment"]
    assert len(experiments) == 2 and all(r[1] == "COMPLETED" for r in experiments), runs
    assert not [r for r in runs if r[1] in ("RUNNING", "PENDING", "SCHEDULED")], runs
