"""The recorder in its own process (tunelib.prefect.recorder_process): fit() waits
``TUNELIB_RECORD_WAIT_S`` at most for the records, the process drains the rest in the
background - also after the script that called fit() exited - and answers run contexts
and cancel notices as the in-process recorder does."""

import asyncio
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from tunelib import tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 4


def trainable(config):
    for i in range(config["iters"]):
        tune.report({"loss": config["lr"] / (i + 1)})


async def _read(api_url, name):
    """``(experiment runs, [(trial run, [its iteration task runs])])`` tagged ``name``."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterTags,
    )

    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[name]))
    async with PrefectClient(api=api_url) as client:
        runs = {}
        for flow in ("experiment", "trial"):
            runs[flow] = await client.read_flow_runs(
                limit=200, flow_run_filter=tagged,
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])))
        trials = []
        for run in runs["trial"]:
            trials.append((run, await client.read_task_runs(
                limit=200, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))))
        return runs["experiment"], trials


def _what_is_missing(api_url, name, trials, iterations):
    """None when the experiment ``name`` is recorded whole: its run and ``trials`` trial
    runs Completed, each with iteration task runs covering 1..``iterations``; else what
    is not (yet)."""
    experiment, runs = asyncio.run(_read(api_url, name))
    if len(experiment) != 1 or not experiment[0].state.is_completed():
        return f"experiment run: {[(r.name, r.state.type) for r in experiment]}"
    if len(runs) != trials:
        return f"{len(runs)} of {trials} trial runs"
    for run, tasks in runs:
        if not run.state.is_completed():
            return f"trial run {run.name} is {run.state.type}"
        covered = set()
        for task in tasks:
            if not (task.name.startswith("iteration ") and task.state.is_completed()):
                return f"task run {task.name} of {run.name} is {task.state.type}"
            first, _, last = task.name[len("iteration "):].partition("-")
            covered.update(range(int(first), int(last or first) + 1))
        if covered != set(range(1, iterations + 1)):
            return f"trial run {run.name} covers iterations {sorted(covered)}"
    return None


def _wait_recorded(api_url, name, trials, iterations, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        missing = _what_is_missing(api_url, name, trials, iterations)
        if missing is None or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _detached_pid(stderr: str) -> int:
    line = next(line for line in stderr.splitlines()
                if line.startswith("tunelib: Prefect is still recording"))
    return int(line.split(" pid ", 1)[1].split(";", 1)[0])


# --------------------------------------------------------------------------- no server
def test_events_travel_as_plain_pickle_else_cloudpickle_else_as_text():
    from tunelib.prefect._recorder_main import _loads
    from tunelib.prefect.recorder_process import encode_batch

    plain = [("trial_result", 1.0, ("t1", {"loss": 0.5}))]
    assert encode_batch(plain) == pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)
    [(_, _, (_, _, config, _, _))] = _loads(encode_batch(
        [("trial_started", 1.0, ("t1", "n", {"f": lambda x: x + 1}, 0, 0))]))
    assert config["f"](1) == 2
    lock = threading.Lock()
    batch = _loads(encode_batch([("trial_result", 1.0, ("t1", {"lock": lock})),
                                 ("trial_finished", 2.0, ("t1", "TERMINATED", ""))]))
    assert batch[0][2][0] == "t1" and "lock" in batch[0][2][1]["lock"]
    assert batch[1] == ("trial_finished", 2.0, ("t1", "TERMINATED", ""))


def test_a_class_the_process_cannot_import_arrives_as_a_stand_in():
    from tunelib.prefect._recorder_main import _loads

    data = pickle.dumps({"cfg": _Config(3)}).replace(b"test_recorder_process",
                                                     b"no_such_module_here__")
    cfg = _loads(data)["cfg"]
    assert cfg.size == 3 and "_Config" in repr(cfg)


class _Config:
    def __init__(self, size):
        self.size = size


def test_the_recorder_kind_is_checked(monkeypatch):
    from tunelib.prefect import create_recorder

    monkeypatch.setenv("TUNELIB_RECORDER", "fiber")
    with pytest.raises(ValueError, match="TUNELIB_RECORDER"):
        create_recorder()


# --------------------------------------------------------------------------- a server
@pytest.mark.slow
def test_close_detaches_and_the_process_records_the_rest(prefect_server, capfd):
    from tunelib.prefect import create_recorder
    from tunelib.prefect.recorder_process import RecorderProcess

    name = f"detach-{uuid.uuid4().hex[:8]}"
    rec = create_recorder(window=0.2, wait_s=0)
    assert isinstance(rec, RecorderProcess)
    rec.experiment_started(name, {"num_samples": 3}, [])
    for k in range(3):
        rec.trial_started(f"t{k}", f"fn_{k}", {"k": k}, 0, 0)
        for i in range(1, ITERATIONS + 1):
            rec.trial_result(f"t{k}", {"training_iteration": i, "loss": 1 / i})
    # run contexts arrive while the experiment runs (the executors poll for them)
    deadline = time.monotonic() + 60
    while rec.run_context("t2") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    experiment, trial = rec.run_context(None), rec.run_context("t2")
    assert experiment is not None and trial is not None
    assert experiment.api_url == prefect_server == rec.api_url
    assert rec.trial_flow_run_id("t2") == trial.flow_run_id
    for k in range(3):
        rec.trial_finished(f"t{k}", "TERMINATED")
    rec.experiment_finished("COMPLETED", [])
    assert rec.close(60) == [] and rec.detached
    err = capfd.readouterr().err
    assert "still recording" in err and f"experiment {name}" in err
    assert _detached_pid(err) == rec.pid
    assert _wait_recorded(prefect_server, name, 3, ITERATIONS) is None
    [run] = asyncio.run(_read(prefect_server, name))[0]
    assert str(run.id) == experiment.flow_run_id


def test_under_the_default_wait_a_server_not_answering_yet_is_not_waited_for(
        prefect_server, monkeypatch, capfd):
    """A close() before the API has answered (a cold embedded server boots for 2-3 s,
    longer than a short experiment) detaches at once under the default wait, however
    long that wait is; the process still records everything."""
    from tunelib.prefect import create_recorder, recorder_process

    monkeypatch.delenv(recorder_process.WAIT_ENV, raising=False)
    monkeypatch.setattr(recorder_process, "DEFAULT_WAIT_S", 600.0)
    name = f"boot-{uuid.uuid4().hex[:8]}"
    rec = create_recorder(window=0.2)
    assert rec.wait_s == 600.0
    rec.experiment_started(name, {"num_samples": 1}, [])
    rec.trial_started("t0", "fn_0", {}, 0, 0)
    for i in range(1, ITERATIONS + 1):
        rec.trial_result("t0", {"training_iteration": i, "loss": 1 / i})
    rec.trial_finished("t0", "TERMINATED")
    rec.experiment_finished("COMPLETED", [])
    assert rec.api_url is None   # the process is still importing Prefect
    assert rec.close(60) == [] and rec.detached
    assert _detached_pid(capfd.readouterr().err) == rec.pid
    assert _wait_recorded(prefect_server, name, 1, ITERATIONS) is None


@pytest.mark.slow
def test_fit_returns_before_the_records_are_written_and_they_all_land(
        prefect_server, storage_dir, monkeypatch):
    monkeypatch.setenv("TUNELIB_RECORD_WAIT_S", "0.5")
    name = f"fit-{uuid.uuid4().hex[:8]}"
    grid = tune.Tuner(
        trainable, param_space={"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4]),
                                "iters": ITERATIONS},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage_dir, verbose=0),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 4
    assert _wait_recorded(prefect_server, name, 4, ITERATIONS) is None


SCRIPT = """
from tunelib import tune

def trainable(config):
    for i in range(config["iters"]):
        tune.report({{"loss": config["lr"] / (i + 1)}})

if __name__ == "__main__":
    tune.Tuner(trainable, param_space={{"lr": tune.grid_search([0.1, 0.2, 0.3]),
                                        "iters": {iters}}},
               run_config=tune.RunConfig(name="{name}", storage_path={storage!r},
                                         verbose=0)).fit()
    print("fit returned")
"""


def _run_script(tmp_path, name, env):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(name=name, iters=ITERATIONS,
                                                    storage=str(tmp_path / "results"))))
    # files, not pipes: the detached process keeps the script's stderr open
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env,
                       stdout=out, stderr=err, timeout=300, check=True)
    return (tmp_path / "out").read_text(), (tmp_path / "err").read_text()


@pytest.mark.slow
def test_a_script_exiting_right_after_fit_still_gets_its_records(prefect_server, tmp_path):
    name = f"script-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, TUNELIB_RECORD_WAIT_S="0", PREFECT_API_URL=prefect_server,
               PYTHONPATH=REPO)
    out, err = _run_script(tmp_path, name, env)
    assert "fit returned" in out
    _detached_pid(err)   # it did not wait
    assert _wait_recorded(prefect_server, name, 3, ITERATIONS) is None


@pytest.mark.slow
def test_the_embedded_server_stays_up_for_a_detached_drain(tmp_path):
    """No API configured: the process records into the embedded server of PREFECT_HOME,
    which it keeps up (its users lock) until it has written everything, after the script
    that started them both is gone."""
    from tunelib.prefect.server import ServerHandle

    name = f"embedded-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), TUNELIB_RECORD_WAIT_S="0", PYTHONPATH=REPO)
    _, err = _run_script(tmp_path, name, env)
    pid = _detached_pid(err)
    deadline = time.monotonic() + 180
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)
    assert "has not recorded everything" not in (tmp_path / "err").read_text()
    saved = os.environ.get("PREFECT_HOME"), os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = str(home)
    try:
        server = ServerHandle().start()
        api_url = server.wait_ready(120)
        try:
            assert _wait_recorded(api_url, name, 3, ITERATIONS, timeout=10) is None
        finally:
            server.stop()
    finally:
        os.environ["PREFECT_HOME"] = saved[0]
        if saved[1] is not None:
            os.environ["PREFECT_API_URL"] = saved[1]


KILLED = """
import os, sys, time
from tunelib.prefect import create_recorder

rec = create_recorder(window=0.1)
rec.experiment_started({name!r}, {{}}, [])
rec.trial_started("t1", "fn_1", {{}}, 0, 0)
for i in range(1, {iters} + 1):
    rec.trial_result("t1", {{"training_iteration": i, "loss": 1 / i}})
rec.trial_finished("t1", "TERMINATED")
time.sleep(0.5)   # the pump sends it
print(rec.pid, flush=True)
os._exit(1)       # killed: no close()
"""


@pytest.mark.slow
def test_a_killed_driver_leaves_its_experiment_recorded_as_failed(prefect_server, tmp_path):
    name = f"killed-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(name=name, iters=ITERATIONS))
    env = dict(os.environ, PREFECT_API_URL=prefect_server, PYTHONPATH=REPO)
    with open(tmp_path / "out", "w") as out:
        subprocess.run([sys.executable, str(script)], env=env, stdout=out,
                       stderr=subprocess.DEVNULL, timeout=120)
    pid = int((tmp_path / "out").read_text().split()[0])
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    experiment, runs = asyncio.run(_read(prefect_server, name))
    assert [run.state.type.value for run in experiment] == ["FAILED"]
    [(trial, tasks)] = runs
    assert trial.state.is_completed() and tasks
