"""The ``tunelib`` worker type: trials as deployment runs in warm, pre-started processes of
a real `prefect worker start --type tunelib`, on a real `prefect server` on PostgreSQL."""

import json
import os
import tempfile
import threading
import time

import pytest

from tunelib import tune
from tunelib.executor.prefect_workers import PrefectWorkers

pytestmark = pytest.mark.slow

ITERATIONS = 5


def counting_fn(config):
    """Counts to ITERATIONS with a checkpoint per step, reporting its process id; fails once
    at step 3 when asked."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"]
    for step in range(start, ITERATIONS):
        if config["fail"] and step == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("injected failure")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1}, f)
            tune.report({"score": config["x"] * (step + 1), "pid": os.getpid()},
                        checkpoint=tune.Checkpoint.from_directory(d))


def slow_fn(config):
    for step in range(40):
        time.sleep(0.25)
        tune.report({"score": step + 1, "pid": os.getpid()})


@pytest.fixture(scope="module")
def warm_cluster():
    from deployments.local_cluster import LocalCluster, postgres_reachable

    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (trust auth, database "
                    "`test`); the warm-worker test needs it for `prefect server`")
    import prefect  # noqa: F401  (settings snapshot before PREFECT_API_URL changes)

    from bench.scaleout_bench import add_pool

    old = os.environ.get("PREFECT_API_URL")
    with LocalCluster(workers=0) as cluster:
        os.environ["PREFECT_API_URL"] = cluster.api_url
        pool, deployment = add_pool(cluster, "tunelib", workers=1)
        cluster.warm = PrefectWorkers(work_pool=pool, deployment=deployment)
        try:
            yield cluster
        finally:
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old


def _trial_runs(cluster, tag):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with SyncPrefectClient(cluster.api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag])))
    return [fr for fr in runs if fr.deployment_id is not None]


def _counting(storage, name, marker, executor=None):
    return tune.Tuner(
        counting_fn,
        param_space={"x": tune.grid_search([1.0, 2.0, 3.0]), "marker": marker,
                     "fail": tune.sample_from(lambda spec: spec.config["x"] == 2.0)},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=1),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  executor=executor),
    ).fit()


def test_trials_run_in_one_warm_process_with_in_place_retries(warm_cluster, tmp_path):
    grid = _counting(str(tmp_path / "shared"), "warm", str(tmp_path / "marker-w"),
                     warm_cluster.warm)
    local = _counting(str(tmp_path / "local"), "local", str(tmp_path / "marker-l"))

    def summary(g):
        return sorted((r.config["x"], r.metrics["score"], r.metrics["training_iteration"])
                      for r in g)

    assert grid.num_errors == 0 and summary(grid) == summary(local)

    runs = _trial_runs(warm_cluster, "warm")
    assert len(runs) == 3
    assert all(fr.state.type.value == "COMPLETED" for fr in runs), [fr.state for fr in runs]
    assert all(fr.labels.get("prefect.worker.type") == "tunelib" for fr in runs)
    # the failed attempt was retried in place by Prefect's engine, in the same run
    assert sorted(fr.run_count for fr in runs) == [1, 1, 2]
    # one warm process ran every trial, one after another: no interpreter per trial
    pids = {r.metrics["pid"] for r in grid}
    assert len(pids) == 1
    assert {fr.infrastructure_pid.rpartition(":")[2] for fr in runs} == {str(pids.pop())}


def test_cancelled_run_kills_its_warm_process_and_a_fresh_one_takes_over(warm_cluster,
                                                                          tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import Cancelling

    storage = str(tmp_path / "shared")
    cancelled = []

    def cancel_when_it_reported():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not cancelled:
            for fr in _trial_runs(warm_cluster, "cancel-warm"):
                path = os.path.join(storage, "cancel-warm")
                dirs = [os.path.join(path, d) for d in os.listdir(path) if d.startswith("slow")]
                results = os.path.join(dirs[0], "result.json") if dirs else ""
                if (fr.state.type.value == "RUNNING" and os.path.exists(results)
                        and len(open(results).read().splitlines()) >= 3):
                    with SyncPrefectClient(warm_cluster.api_url) as client:
                        client.set_flow_run_state(fr.id, Cancelling(message="by the test"),
                                                  force=True)
                    cancelled.append(fr)
            time.sleep(0.3)

    before = {r.metrics["pid"] for r in _counting(
        str(tmp_path / "first"), "before-cancel", str(tmp_path / "m1"), warm_cluster.warm)}
    threading.Thread(target=cancel_when_it_reported, daemon=True).start()
    grid = tune.Tuner(
        slow_fn, run_config=tune.RunConfig(name="cancel-warm", storage_path=storage,
                                           verbose=0, executor=warm_cluster.warm),
    ).fit()
    assert cancelled
    assert grid.num_errors == 0 and grid[0].metrics["training_iteration"] < 40
    [run] = _trial_runs(warm_cluster, "cancel-warm")
    assert run.state.type.value == "CANCELLED" and run.run_count == 1
    # the cancelled run's process was killed; the next trial runs in a fresh one
    after = {r.metrics["pid"] for r in _counting(
        str(tmp_path / "after"), "after-cancel", str(tmp_path / "m2"), warm_cluster.warm)}
    assert len(after) == 1 and after != before and grid[0].metrics["pid"] in before
