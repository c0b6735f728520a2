"""Iteration task runs carry their TRUE times: the recorder sends them as Prefect events
(``tunelib.prefect._events``), so a task run's start and end time are the times of its
first and last result, not the server's clock when the write arrived; and when the events
websocket cannot be used, the iteration task runs are still created (through REST)."""

import asyncio
import logging
import time

import pytest

from tunelib import tune

pytestmark = [pytest.mark.slow]

REPORTS = 4
SLEEP_S = 0.3


def timed_trainable(config):
    for _ in range(REPORTS):
        time.sleep(SLEEP_S)
        tune.report({"loss": config["lr"], "reported_at": time.time()})


async def _iteration_runs(api_url, name):
    """trial run name -> (its flow run, its iteration task runs), of the experiment
    ``name``."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import TaskRunSort

    async with PrefectClient(api=api_url) as client:
        trials = await client.read_flow_runs(
            limit=200, flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[name])))
        out = {}
        for fr in trials:
            out[fr.name] = (fr, await client.read_task_runs(
                limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id]))))
        return out


def _fit(name, storage_dir):
    return tune.Tuner(
        timed_trainable, param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage_dir, verbose=0),
    ).fit()


def _reported_times(result):
    df = result.metrics_dataframe
    return dict(zip(df["training_iteration"], df["reported_at"]))


def test_iteration_task_runs_span_the_times_of_their_results(prefect_server, storage_dir,
                                                             monkeypatch):
    from tunelib.prefect._record import ExperimentRecord

    # the time each result reached the recorder (the controller's clock when it got it)
    got_at = {}
    take = ExperimentRecord.trial_result

    def spy(self, t, trial_id, result):
        got_at[trial_id, result["training_iteration"]] = t
        take(self, t, trial_id, result)

    monkeypatch.setenv("TUNELIB_RECORDER", "thread")   # the spy sees this process's writer
    monkeypatch.setattr(ExperimentRecord, "trial_result", spy)
    grid = _fit("true_times", storage_dir)
    assert grid.num_errors == 0
    by_trial = asyncio.run(_iteration_runs(prefect_server, "true_times"))
    assert len(by_trial) == 2
    for result in grid:
        trial_id = result.metrics["trial_id"]
        fr, tasks = by_trial[f"timed_trainable_{trial_id}"]
        reported = _reported_times(result)
        covered = []
        assert tasks, "no iteration task runs"
        for task in tasks:
            assert task.name.startswith("iteration ") and task.state.is_completed()
            assert task.flow_run_id == fr.id
            first, _, last = task.name[len("iteration "):].partition("-")
            first, last = int(first), int(last or first)
            covered.extend(range(first, last + 1))
            # exactly when the first and last result arrived (not when the write did) -
            # which is after the trainable reported them, by the trip from its process
            start, end = task.start_time.timestamp(), task.end_time.timestamp()
            assert abs(start - got_at[trial_id, first]) < 1e-3
            assert abs(end - got_at[trial_id, last]) < 1e-3
            assert reported[first] <= start <= end and end >= reported[last]
        assert sorted(covered) == sorted(reported)


def test_without_events_iteration_task_runs_are_created_through_rest(
        prefect_server, storage_dir, monkeypatch, caplog):
    from tunelib.prefect import _events

    def no_websocket(self):
        raise ConnectionRefusedError("events websocket disabled (test)")

    monkeypatch.setenv("TUNELIB_RECORDER", "thread")   # the patch reaches this process only
    monkeypatch.setattr(_events.TaskRunEvents, "_connect", no_websocket)
    with caplog.at_level(logging.INFO, logger="tunelib.recorder"):
        grid = _fit("no_events", storage_dir)
    assert grid.num_errors == 0
    said = [r.getMessage() for r in caplog.records
            if "through the REST API instead" in r.getMessage()]
    assert len(said) == 1 and "events websocket disabled (test)" in said[0]
    runs = asyncio.run(_iteration_runs(prefect_server, "no_events"))
    assert len(runs) == 2
    for result in grid:
        _, tasks = runs[f"timed_trainable_{result.metrics['trial_id']}"]
        covered = []
        for task in tasks:
            assert task.state.is_completed()
            first, _, last = task.name[len("iteration "):].partition("-")
            covered.extend(range(int(first), int(last or first) + 1))
        assert sorted(covered) == sorted(_reported_times(result))


def test_task_runs_the_server_did_not_store_are_listed_after_the_wait():
    import types
    import uuid

    from tunelib.prefect._events import unrecorded_task_runs

    ids = [str(uuid.uuid4()) for _ in range(450)]
    stored = set(ids[:-3])
    asked = []

    class Client:
        async def read_task_runs(self, task_run_filter, limit):
            chunk = [str(x) for x in task_run_filter.id.any_]
            asked.append(len(chunk))
            return [types.SimpleNamespace(id=x) for x in chunk if x in stored]

    missing = asyncio.run(unrecorded_task_runs(Client(), ids, within_s=0.3))
    assert missing == ids[-3:]
    assert asked[:3] == [200, 200, 50] and set(asked[3:]) == {3}   # then only the missing
