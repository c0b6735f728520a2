"""Short trials written whole (issue 15, drain): on tunelib's embedded server a trial that
started and ended between two of the recorder's flushes is written in one request with
others (``tunelib.prefect._bulk_app``), and reads back through Prefect's client exactly as
one written through the REST API: a Completed child flow run of the experiment run with
its retries, the subflow's stand-in task run naming it, its iteration task run, its log
lines and its metric table. Trials that run longer or fail go on through REST in the same
experiment; a server without the route gets every trial through REST."""

import asyncio
import os
import re
import time

import pytest

from tunelib import tune

pytestmark = [pytest.mark.slow]

N = 12


def trainable(config):
    i = config["i"]
    if i == 0:  # runs past the recorder's window: its start is written through REST
        for step in range(4):
            time.sleep(0.4)
            tune.report({"loss": 1.0 / (step + 1)})
        return
    if i == 1 and not os.path.exists(config["marker"]):  # fails once, then succeeds
        open(config["marker"], "w").close()
        raise RuntimeError("flaky once")
    print(f"hello from trial {i}")
    tune.report({"loss": float(i)})


def _fit(name, storage_dir, tmp_path):
    return tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(N))), "marker": str(tmp_path / "flaky")},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage_dir, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()


async def _read(api_url, name):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterTags,
        LogFilter,
        LogFilterFlowRunId,
    )

    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[name]))
    async with PrefectClient(api=api_url) as client:
        [exp] = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["experiment"])),
            flow_run_filter=tagged)
        trials = await client.read_flow_runs(
            limit=200, flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])),
            flow_run_filter=tagged)
        out = {}
        for fr in trials:
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
            parent = await client.read_task_run(fr.parent_task_run_id)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr.id])))
            response = await client.request("POST", "/artifacts/filter", json={
                "artifacts": {"flow_run_id": {"any_": [str(fr.id)]}}, "limit": 10})
            out[fr.parameters["config"]["i"]] = (fr, tasks, parent, logs, response.json())
        return exp, out


def _check(api_url, name, grid):
    assert grid.num_errors == 0 and len(grid) == N
    exp, trials = asyncio.run(_read(api_url, name))
    assert exp.state.is_completed()
    assert sorted(trials) == list(range(N))
    for i, (fr, tasks, parent, logs, artifacts) in trials.items():
        assert fr.state.is_completed(), (i, fr.state)
        assert fr.empirical_policy.retries == 1
        assert fr.run_count == (2 if i == 1 else 1)
        assert fr.start_time is not None and fr.end_time is not None
        assert fr.start_time <= fr.end_time
        # the subflow's stand-in in the experiment run names its child, as Prefect does
        assert parent.flow_run_id == exp.id and parent.state.is_completed()
        assert parent.state.state_details.child_flow_run_id == fr.id
        covered = set()
        for task in tasks:
            assert task.state.is_completed()
            first, _, last = task.name[len("iteration "):].partition("-")
            covered.update(range(int(first), int(last or first) + 1))
        assert covered == set(range(1, (4 if i == 0 else 1) + 1)), (i, covered)
        if i >= 2:
            assert any(f"hello from trial {i}" in line.message for line in logs), i
        assert any(a["key"].endswith("metrics") for a in artifacts), (i, artifacts)


@pytest.fixture
def embedded_api(tmp_path, monkeypatch):
    """A fresh tunelib embedded server, held by this test so that it outlives fit()."""
    import prefect  # noqa: F401 - imported here it keeps the session's PREFECT_HOME

    from tunelib.prefect.server import ServerHandle

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    handle = ServerHandle().start()
    try:
        yield handle.wait_ready(300)
    finally:
        handle.stop()


def test_short_trials_are_written_whole_on_the_embedded_server(embedded_api, tmp_path,
                                                               monkeypatch, storage_dir, capfd):
    monkeypatch.setenv("TUNELIB_PREFECT_STATS", "1")
    grid = _fit("whole", storage_dir, tmp_path)
    err = capfd.readouterr().err
    # most trials end within the recorder's wait; those that fail or run longer go
    # through REST
    whole = re.search(r"Prefect recording of 'whole': .* (\d+) trials written whole", err)
    assert whole is not None and int(whole.group(1)) >= 1, err
    _check(embedded_api, "whole", grid)


def _trainable_calling_a_task():
    """A trainable whose @task travels with it: the worker imports Prefect to load it, so
    the trial asks for its flow run as it starts."""
    from prefect import task

    @task(name="user-step")
    def step(x):
        return x + 1

    def trainable(config):
        tune.report({"y": step(config["x"])})

    return trainable


def test_a_trainable_using_prefect_gets_its_run_at_once(embedded_api, storage_dir):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    grid = tune.Tuner(
        _trainable_calling_a_task(), param_space={"x": tune.grid_search([1, 2, 3])},
        run_config=tune.RunConfig(name="wants-run", storage_path=storage_dir, verbose=0),
    ).fit()
    assert grid.num_errors == 0 and sorted(r.metrics["y"] for r in grid) == [2, 3, 4]

    async def read():
        async with PrefectClient(api=embedded_api) as client:
            trials = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["wants-run"])))
            tasks = await client.read_task_runs()
            return trials, tasks

    deadline = time.monotonic() + 30   # task runs come through events: a moment later
    while True:
        trials, tasks = asyncio.run(read())
        trial_runs = {fr.id for fr in trials if fr.parent_task_run_id is not None}
        steps = [t for t in tasks if t.name.startswith("user-step")]
        if len(steps) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(trial_runs) == 3
    # each trial's task ran inside the trial's own flow run
    assert sorted(t.flow_run_id for t in steps) == sorted(trial_runs)


def test_a_server_without_the_route_gets_every_trial_through_rest(prefect_server, storage_dir,
                                                                  tmp_path, monkeypatch):
    from tunelib.prefect import _writes

    async def says_yes(self):
        self.bulk = True   # as an older tunelib server might: the first batch gets 404
        return True

    monkeypatch.setenv("TUNELIB_RECORDER", "thread")
    monkeypatch.setattr(_writes.PrefectWrites, "probe_bulk", says_yes)
    grid = _fit("whole-fallback", storage_dir, tmp_path)
    _check(prefect_server, "whole-fallback", grid)


def test_a_failed_whole_trial_write_is_reported_and_nothing_waits_for_it(prefect_server,
                                                                         monkeypatch):
    from tunelib.prefect import _writes
    from tunelib.prefect.recorder import PrefectRecorder

    async def says_yes(self):
        self.bulk = True
        return True

    async def fails(self, records):
        raise RuntimeError("the server answered 500")

    monkeypatch.setattr(_writes.PrefectWrites, "probe_bulk", says_yes)
    monkeypatch.setattr(_writes.PrefectWrites, "create_trials", fails)
    rec = PrefectRecorder(api_url=prefect_server, window=0.2)
    rec.experiment_started("whole-fails", {}, [])
    rec.trial_started("t1", "fn_t1", {"x": 1}, 0, 0)
    rec.trial_result("t1", {"training_iteration": 1, "loss": 1.0})
    rec.trial_finished("t1", "TERMINATED")
    time.sleep(0.5)   # the batch is written (and fails); then a late line of the trial
    rec.trial_logs("t1", [(time.time(), 20, "stdout", "a late line")])
    rec.experiment_finished("COMPLETED", [])
    t0 = time.monotonic()
    missing = rec.close(60)
    assert time.monotonic() - t0 < 30   # not the whole timeout
    assert "1 whole trial runs not recorded: RuntimeError: the server answered 500" in \
        "\n".join(missing), missing
