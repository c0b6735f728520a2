"""What Prefect records of a real experiment, read back through Prefect's client as soon as
fit() returns: one experiment flow run, one child flow run per trial with its retries, and
iteration task runs covering every reported result."""

import asyncio
import os

import pytest
from _early_stopping import ITERATIONS, asha_experiment, assert_stopped_trials_recorded

from tunelib import tune

pytestmark = [pytest.mark.slow]


def trainable(config):
    for i in range(config["iters"]):
        if i == 3 and config["flaky"] and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("flaky once")
        tune.report({"loss": config["lr"] / (i + 1)})


async def _records(api_url, name):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    kw = dict(limit=200, sort=FlowRunSort.ID_DESC)
    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[name]))
    async with PrefectClient(api=api_url) as client:
        exp = await client.read_flow_runs(
            **kw, flow_filter=FlowFilter(name=FlowFilterName(any_=["experiment"])),
            flow_run_filter=tagged)
        trials = await client.read_flow_runs(
            **kw, flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])),
            flow_run_filter=tagged)
        out = {"experiment": exp, "trials": {}}
        for fr in trials:
            tasks = await client.read_task_runs(
                limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
            states = [s.name for s in await client.read_flow_run_states(fr.id)]
            parent = await client.read_task_run(fr.parent_task_run_id)
            out["trials"][fr.name] = (fr, tasks, states, parent)
        return out


def test_experiment_trials_retries_and_iterations_are_recorded(prefect_server, storage_dir,
                                                                tmp_path):
    grid = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3]), "iters": 40,
                     "flaky": tune.sample_from(lambda spec: spec.config.lr == 0.2),
                     "marker": str(tmp_path / "flaky")},
        tune_config=tune.TuneConfig(metric="loss", mode="min", max_concurrent_trials=2),
        run_config=tune.RunConfig(name="recorded", storage_path=storage_dir, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2)),
    ).fit()
    assert grid.num_errors == 0
    records = asyncio.run(_records(prefect_server, "recorded"))

    [exp] = records["experiment"]
    assert exp.name == "recorded" and exp.state.is_completed()
    assert len(records["trials"]) == 3
    for result in grid:
        trial_name = f"trainable_{result.metrics['trial_id']}"
        fr, tasks, states, parent = records["trials"][trial_name]
        assert "recorded" in fr.tags and result.metrics["trial_id"] in fr.tags
        assert fr.parameters["config"]["lr"] == result.config["lr"]
        assert parent.flow_run_id == exp.id          # a child of the experiment flow run
        assert fr.state.is_completed()
        assert fr.empirical_policy.retries == 2      # max_failures
        # the iteration task runs cover every reported training_iteration
        covered = []
        for task in tasks:
            assert task.name.startswith("iteration ") and task.state.is_completed()
            first, _, last = task.name[len("iteration "):].partition("-")
            covered.extend(range(int(first), int(last or first) + 1))
        iterations = list(result.metrics_dataframe["training_iteration"])
        assert sorted(set(covered)) == sorted(set(iterations))
        if result.config["flaky"]:
            assert fr.run_count == 2
            assert "AwaitingRetry" in states and "Retrying" in states
        else:
            assert fr.run_count == 1 and "AwaitingRetry" not in states



# --------------------------------------------------------------------------- early stopping
def test_trials_stopped_by_asha_are_recorded_as_stopped(prefect_server, storage_dir,
                                                         tmp_path):
    grid = asha_experiment("asha-local", storage_dir, str(tmp_path / "markers"), sleep=0.2)
    assert grid.num_errors == 0
    iterations = {r.config["rank"]: r.metrics["training_iteration"] for r in grid}
    assert iterations == {0: ITERATIONS, 1: 1, 2: 1, 3: 1}  # stopped exactly at rung 1

    records = asyncio.run(_records(prefect_server, "asha-local"))
    assert_stopped_trials_recorded({fr.parameters["config"]["rank"]: fr.state
                                    for fr, _, _, _ in records["trials"].values()})
