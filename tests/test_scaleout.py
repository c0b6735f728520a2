"""Scale-out: trials as deployment runs on real `prefect worker` processes, a real
`prefect server` on PostgreSQL, storage shared through a directory."""

import json
import os
import tempfile
import time

import pytest
from _early_stopping import asha_experiment, assert_stopped_trials_recorded

from tunelib import tune
from tunelib.executor.prefect_workers import PrefectWorkers, PrefectWorkersError

pytestmark = pytest.mark.slow

ITERATIONS = 6


def _requires_postgres():
    from deployments.local_cluster import postgres_reachable

    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (trust auth, database "
                    "`test`); the scale-out test needs it for `prefect server`")


def counting_fn(config):
    """Counts to ITERATIONS with a checkpoint per step; fails once at step 3 when asked."""
    import logging

    print(f"counting-marker x={config['x']}")
    logging.getLogger("counting").warning("logging-marker x=%s", config["x"])
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"]
    for step in range(start, ITERATIONS):
        if config["fail"] and step == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("injected failure")
        time.sleep(0.05)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1}, f)
            tune.report({"score": config["x"] * (step + 1), "step": step + 1},
                        checkpoint=tune.Checkpoint.from_directory(d))


def _run(storage, name, marker, executor=None):
    xs = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    tuner = tune.Tuner(
        counting_fn,
        param_space={"x": tune.grid_search(xs), "fail": tune.sample_from(
            lambda spec: spec.config["x"] == 2.0), "marker": marker},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            executor=executor,
        ),
    )
    return tuner.fit()


def _summary(grid):
    return sorted(
        (r.config["x"], r.metrics["score"], r.metrics["training_iteration"], r.error is None)
        for r in grid
    )


@pytest.fixture(scope="module")
def s3_endpoint(request):
    """A bucket on the session's moto S3 server, or None without s3fs/moto."""
    try:
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError:
        return None
    return request.getfixturevalue("moto_s3")("tunelib-scaleout")


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    _requires_postgres()
    # Prefect snapshots its settings when first imported: import it before PREFECT_API_URL
    # points at this cluster, so that later test modules do not inherit the URL
    import prefect  # noqa: F401

    from deployments.local_cluster import LocalCluster

    old = os.environ.get("PREFECT_API_URL")
    with LocalCluster(workers=2) as c:
        os.environ["PREFECT_API_URL"] = c.api_url
        try:
            yield c
        finally:
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old


def _workers(cluster, **kwargs):
    return PrefectWorkers(work_pool=cluster.pool, deployment=f"trial/{cluster.deployment_name}",
                          **kwargs)


def test_experiment_on_two_workers_equals_local_run(cluster, tmp_path):
    storage = str(tmp_path / "shared")
    grid = _run(storage, "scaleout", str(tmp_path / "marker-w"),
                executor=_workers(cluster))
    local = _run(str(tmp_path / "local"), "local", str(tmp_path / "marker-l"))

    # same configs, final metrics and iteration counts as the local executor
    assert len(grid) == 8 and grid.num_errors == 0
    assert _summary(grid) == _summary(local)
    assert all(r.metrics["training_iteration"] == ITERATIONS for r in grid)

    # results and checkpoints are on the shared storage
    for r in grid:
        lines = open(os.path.join(r.path, "result.json")).read().splitlines()
        assert len(lines) >= ITERATIONS
        assert r.checkpoint is not None and os.path.isdir(r.checkpoint.path)
    failed = next(r for r in grid if r.config["x"] == 2.0)
    assert os.path.exists(os.path.join(failed.path, "error.txt"))

    # every trial ran as a deployment run on one of the workers
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with SyncPrefectClient(cluster.api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["scaleout"])))
    trial_runs = [fr for fr in runs if fr.deployment_id is not None]
    assert len(trial_runs) == 8
    for fr in trial_runs:
        assert fr.work_pool_name == cluster.pool
        assert fr.state.type.value == "COMPLETED", (fr.name, fr.state)
        assert fr.infrastructure_pid
        assert fr.labels.get("prefect.worker.name") in cluster.worker_names
    retried = [fr for fr in trial_runs if fr.run_count > 1]
    # the failure was retried in place by Prefect (run_count 2), not resubmitted
    assert [fr.parameters["config"]["x"] for fr in retried] == [2.0]

    # the trials are subflows of the experiment: each run's parent task run is in it
    experiment_runs = [fr for fr in runs if fr.deployment_id is None]
    assert len(experiment_runs) == 1
    with SyncPrefectClient(cluster.api_url) as client:
        for fr in trial_runs:
            assert fr.parent_task_run_id is not None, fr.name
            parent = client.read_task_run(fr.parent_task_run_id)
            assert parent.flow_run_id == experiment_runs[0].id, fr.name
        logs = {fr.id: _run_logs(client, fr.id, "logging-marker") for fr in trial_runs}
    # the trainable's prints and logging records are on its run
    for fr in trial_runs:
        messages = [log.message for log in logs[fr.id]]
        assert any("counting-marker x=" in m for m in messages), (fr.name, messages)
        assert any("logging-marker x=" in m for m in messages), (fr.name, messages)
    # the retried run: the failed attempt's traceback is a warning; nothing at ERROR after
    # the retry started (Prefect's engine once re-raised the failure at the end)
    messages = [(log.level, log.message) for log in logs[retried[0].id]]
    assert any(level == 30 and "injected failure" in m for level, m in messages), messages
    retry_at = next(i for i, (_, m) in enumerate(messages) if "attempt 2" in m)
    assert [m for level, m in messages[retry_at:] if level >= 40] == []
    assert not any("Engine execution exited" in m for _, m in messages)


def _run_logs(client, flow_run_id, wait_for: str, timeout_s: float = 30.0):
    """The run's logs, once one containing ``wait_for`` arrived (workers ship logs in
    batches) or after ``timeout_s``."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    deadline = time.monotonic() + timeout_s
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[flow_run_id])), sort=LogSort.TIMESTAMP_ASC)
        if any(wait_for in log.message for log in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def slow_counting_fn(config):
    """30 steps of 0.3 s, a checkpoint each."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"]
    for step in range(start, 30):
        time.sleep(0.3)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1}, f)
            tune.report({"score": config["x"] * (step + 1)},
                        checkpoint=tune.Checkpoint.from_directory(d))


def _results(trial_dir):
    path = os.path.join(trial_dir, "result.json")
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path).read().splitlines() if line.strip()]


def test_killed_worker_trial_is_retried_elsewhere_from_its_checkpoint(cluster, tmp_path):
    import threading

    storage = str(tmp_path / "shared")
    killed = threading.Event()

    def kill_worker_when_both_trials_report():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            exp = os.path.join(storage, "killed")
            dirs = [os.path.join(exp, d) for d in os.listdir(exp)] if os.path.isdir(exp) else []
            trials = [d for d in dirs if os.path.isdir(d) and not d.endswith(".tunelib")]
            if len(trials) == 2 and all(len(_results(d)) >= 3 for d in trials):
                cluster.kill_worker(0)  # the worker and its flow run process: a machine gone
                killed.set()
                cluster.start_worker("tunelib-worker-replacement")
                return
            time.sleep(0.2)

    threading.Thread(target=kill_worker_when_both_trials_report, daemon=True).start()
    grid = tune.Tuner(
        slow_counting_fn, param_space={"x": tune.grid_search([1.0, 2.0])},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="killed", storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            executor=_workers(cluster, heartbeat_timeout_s=6, start_timeout_s=60)),
    ).fit()
    assert killed.is_set()
    assert grid.num_errors == 0
    assert sorted(r.metrics["score"] for r in grid) == [30.0, 60.0]

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with SyncPrefectClient(cluster.api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["killed"])))
    trial_runs = [fr for fr in runs if fr.deployment_id is not None]
    crashed = [fr for fr in trial_runs if fr.state.type.value == "CRASHED"]
    assert len(crashed) == 1 and crashed[0].labels["prefect.worker.name"] == "tunelib-worker-0"
    again = [fr for fr in trial_runs if fr.name == crashed[0].name and fr.id != crashed[0].id]
    assert len(again) == 1 and again[0].state.type.value == "COMPLETED"
    assert again[0].labels["prefect.worker.name"] != "tunelib-worker-0"
    # nothing lost: the retry went on from the latest checkpoint, not from step 1
    result = next(r for r in grid if r.path.endswith(crashed[0].name) or
                  os.path.basename(r.path).startswith(crashed[0].name))
    iterations = [row["training_iteration"] for row in _results(result.path)]
    assert iterations[-1] == 30 and sorted(set(iterations)) == list(range(1, 31))
    assert len(iterations) < 2 * 30 - 3  # resumed past the start


def test_cancelled_trial_run_ends_that_trial_without_a_retry(cluster, tmp_path):
    import threading

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Cancelling

    storage = str(tmp_path / "shared")
    cancelled = []

    def cancel_x2_when_it_reported():
        with SyncPrefectClient(cluster.api_url) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=["cancel-one"])))
                for fr in runs:
                    if (fr.deployment_id is not None and fr.parameters["config"]["x"] == 2.0
                            and fr.state.type.value == "RUNNING"):
                        exp = os.path.join(storage, "cancel-one")
                        dirs = [os.path.join(exp, d) for d in os.listdir(exp) if "x=2" in d]
                        if dirs and len(_results(dirs[0])) >= 3:
                            client.set_flow_run_state(fr.id, Cancelling(message="by the test"),
                                                      force=True)
                            cancelled.append(fr.id)
                            return
                time.sleep(0.3)

    threading.Thread(target=cancel_x2_when_it_reported, daemon=True).start()
    grid = tune.Tuner(
        slow_counting_fn, param_space={"x": tune.grid_search([1.0, 2.0])},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="cancel-one", storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            executor=_workers(cluster)),
    ).fit()
    assert cancelled
    # the experiment finished; the cancelled trial stopped early, not as a failure
    assert grid.num_errors == 0
    by_x = {r.config["x"]: r for r in grid}
    assert by_x[1.0].metrics["training_iteration"] == 30
    assert by_x[2.0].metrics["training_iteration"] < 30
    assert not os.path.exists(os.path.join(by_x[2.0].path, "error.txt"))
    with SyncPrefectClient(cluster.api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["cancel-one"])))
    x2_runs = [fr for fr in runs
               if fr.deployment_id is not None and fr.parameters["config"]["x"] == 2.0]
    # not retried: one run, the cancelled one, which ran once
    assert [str(fr.id) for fr in x2_runs] == [str(cancelled[0])]
    assert x2_runs[0].run_count == 1


def test_storage_on_s3_is_shared_with_the_workers(cluster, s3_endpoint, tmp_path, monkeypatch):
    if s3_endpoint is None:
        pytest.skip("moto and s3fs are needed for the S3 endpoint on loopback")
    # Tuner writes tuner.pkl for s3 experiments to a relative local path (a bug reported
    # to tunelib/tune/tuner.py's owner): keep it out of the checkout
    monkeypatch.chdir(tmp_path)
    from tunelib import storage

    grid = tune.Tuner(
        slow_counting_fn, param_space={"x": tune.grid_search([1.0, 3.0])},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2,
                                    scheduler=tune.schedulers.FIFOScheduler()),
        run_config=tune.RunConfig(name="on-s3", storage_path=s3_endpoint, verbose=0,
                                  stop={"training_iteration": 5},
                                  executor=_workers(cluster)),
    ).fit()
    assert grid.num_errors == 0
    fs, _ = storage.get_fs_and_path(s3_endpoint)
    for r in grid:
        # the stopper's STOP reached the trial through the control record on S3 within
        # ~2 s (results reach S3 every 0.5 s, the driver polls, the trial reads the record
        # every 0.25 s), at 0.3 s an iteration
        assert 5 <= r.metrics["training_iteration"] <= 12
        assert r.checkpoint is not None and r.checkpoint.path.startswith("tunelib-scaleout/")
        assert storage.exists(fs, f"{r.path}/result.json")


def test_sync_decisions_stop_trials_at_the_exact_iteration(cluster, tmp_path):
    grid = tune.Tuner(
        slow_counting_fn, param_space={"x": tune.grid_search([1.0, 2.0])},
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(name="sync", storage_path=str(tmp_path / "shared"), verbose=0,
                                  stop={"training_iteration": 3},
                                  executor=_workers(cluster, sync_decisions=True)),
    ).fit()
    assert grid.num_errors == 0
    for r in grid:
        assert [row["training_iteration"] for row in _results(r.path)] == [1, 2, 3]
        assert r.metrics["training_iteration"] == 3


def test_trials_stopped_by_asha_are_recorded_as_stopped(cluster, tmp_path):
    grid = asha_experiment("asha-workers", str(tmp_path / "shared"), str(tmp_path / "markers"),
                           sleep=0.5, executor=_workers(cluster))
    assert grid.num_errors == 0

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with SyncPrefectClient(cluster.api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["asha-workers"])))
    trial_runs = [fr for fr in runs if fr.deployment_id is not None]
    assert len(trial_runs) == 4  # one deployment run each, none retried
    assert_stopped_trials_recorded({fr.parameters["config"]["rank"]: fr.state
                                    for fr in trial_runs})


def test_missing_deployment_names_the_command_that_creates_it(cluster, tmp_path):
    with pytest.raises(PrefectWorkersError, match="deployments/deploy.py"):
        _run(str(tmp_path / "s"), "nodeploy", str(tmp_path / "m"),
             executor=PrefectWorkers(work_pool=cluster.pool, deployment="trial/nope"))


def test_missing_pool_names_the_command_that_creates_it(cluster, tmp_path):
    with pytest.raises(PrefectWorkersError, match="prefect work-pool create nopool"):
        _run(str(tmp_path / "s"), "nopool", str(tmp_path / "m"),
             executor=PrefectWorkers(work_pool="nopool"))


def test_unreachable_server_is_retried_then_a_clear_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(PrefectWorkersError, match="did not answer"):
        _run(str(tmp_path / "s"), "noserver", str(tmp_path / "m"),
             executor=PrefectWorkers(api_url="http://127.0.0.1:9/api", connect_attempts=3))
    assert time.monotonic() - start >= 1.4  # backed off 0.5 + 1 s


def test_missing_api_url_is_one_clear_error_before_prefect_starts(tmp_path, monkeypatch,
                                                                  capfd):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
    with pytest.raises(PrefectWorkersError, match="needs PREFECT_API_URL set to the Prefect "
                                                  "server that the workers poll"):
        _run(str(tmp_path / "s"), "nourl", str(tmp_path / "m"), executor=PrefectWorkers())
    assert "Failed to initialize plugins" not in capfd.readouterr().err


class _FakeWorkersAPI:
    """The executor's Prefect calls, recorded; every run's state history says Cancelling."""

    api_url = "http://127.0.0.1:4200/api"

    def __init__(self):
        self.calls = []

    def create_subflow_task_run(self, experiment_flow_run_id, trial_id, name, tags):
        self.calls.append(("task run", experiment_flow_run_id, trial_id))
        return "parent-task-run"

    def create_trial_run(self, trial_id, parameters, name, tags, retries, parent_task_run_id):
        self.calls.append(("flow run", trial_id, parent_task_run_id))
        return "trial-run"

    def read_states(self, ids):
        from tunelib.prefect.workers_api import RunState

        return {i: RunState("CRASHED", "Execution was aborted by a termination signal.")
                for i in ids}

    def cancel_state(self, flow_run_id):
        from tunelib.prefect.workers_api import RunState

        return RunState("CANCELLING", "by the user")


class _LateRecorder:
    """Creates the experiment's run on its third ``run_context`` call, as the real one
    does some time after the experiment started."""

    def __init__(self):
        self.asked = 0
        self.attached = []

    def run_context(self, trial_id=None):
        from tunelib.recording import RunContext

        self.asked += 1
        return RunContext(_FakeWorkersAPI.api_url, "experiment-run") if self.asked >= 3 else None

    def trial_attached(self, trial_id, flow_run_id):
        self.attached.append((trial_id, flow_run_id))


def test_trial_runs_are_children_of_the_experiment_and_a_cancel_ends_the_trial(tmp_path):
    from types import SimpleNamespace

    from tunelib import storage
    from tunelib.executor.base import EventKind, TrialSpec
    from tunelib.executor.prefect_workers import PrefectWorkersExecutor, TrialRunCancelled

    fs, path = storage.get_fs_and_path(str(tmp_path))
    experiment = SimpleNamespace(fs=fs, experiment_path=path, experiment_uri=str(tmp_path),
                                 max_failures=1)
    recorder = _LateRecorder()
    executor = PrefectWorkersExecutor(PrefectWorkers(state_poll_s=0), experiment, 2,
                                      recorder=recorder)
    executor._api = api = _FakeWorkersAPI()
    executor.start_trial(TrialSpec("t0", "train_t0", "train_t0", "exp", str(tmp_path),
                                   f"{path}/train_t0", "key", {"x": 1}))
    # the first trial waited for the experiment's run, then nested under it
    assert recorder.asked == 3
    assert api.calls == [("task run", "experiment-run", "t0"),
                         ("flow run", "t0", "parent-task-run")]
    assert recorder.attached == [("t0", "trial-run")]
    # its run was cancelled (Prefect recorded the killed process as Crashed first): the
    # trial ends DONE, with the cancel as its reason, not as an error to retry
    events = executor.poll(1.0)
    assert [(e.kind, type(e.error)) for e in events] == [(EventKind.DONE, TrialRunCancelled)]
    assert "cancelled" in events[0].error_text
