"""What the recorder owes a Prefect user (issue 11), read back through Prefect's client:
the experiment nests under the caller's flow (or task) run; trial output, tracebacks and
the final summary land as logs on the right runs with their own times; Cancel in Prefect
reaches the engine and cancelled or interrupted trials end Cancelled; a dead or missing
server makes close() return at once with one compact summary."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome
from tunelib.recording import LogLine

pytestmark = [pytest.mark.slow]


def _read(api_url, fn):
    async def go():
        from prefect.client.orchestration import PrefectClient

        async with PrefectClient(api=api_url) as client:
            return await fn(client)

    return asyncio.run(go())


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met within the time limit")


def _one_trial(rec, name, trial_id="t1", results=3):
    rec.experiment_started(name, {"num_samples": 1}, [])
    rec.trial_started(trial_id, f"train_{trial_id}", {"lr": 0.1}, 0, 0)
    for i in range(1, results + 1):
        rec.trial_result(trial_id, {"training_iteration": i, "loss": 1 / i})


def _recorder(**kw):
    from tunelib.prefect.recorder import PrefectRecorder

    return PrefectRecorder(window=0.05, **kw)


# --------------------------------------------------------------------------- nesting
def _nested_experiment(name):
    from tunelib.prefect._caller import caller_run

    caller = caller_run()
    rec = _recorder(caller=caller)
    _one_trial(rec, name)
    rec.trial_finished("t1", TrialOutcome.TERMINATED)
    rec.experiment_finished(ExperimentOutcome.COMPLETED, [{"trial_id": "t1", "status": "X"}])
    assert rec.close(60) == []
    return caller, rec.experiment_flow_run_id


def test_the_experiment_is_a_subflow_of_the_callers_flow_run(prefect_server):
    from prefect import flow

    @flow(name="user-pipeline")
    def pipeline():
        return _nested_experiment("nested-in-flow")

    caller, exp_id = pipeline()

    async def parent(client):
        exp = await client.read_flow_run(exp_id)
        return exp, await client.read_task_run(exp.parent_task_run_id)

    exp, task_run = _read(prefect_server, parent)
    assert str(task_run.flow_run_id) == caller.flow_run_id
    assert task_run.state.is_completed()            # mirrored from the experiment's run
    assert "__parents__" not in task_run.task_inputs
    assert exp.state.is_completed()


def test_inside_a_task_the_stand_in_task_run_names_the_callers_task_run(prefect_server):
    from prefect import flow, task

    @task
    def tune_step():
        return _nested_experiment("nested-in-task")

    @flow(name="user-pipeline-task")
    def pipeline():
        return tune_step()

    caller, exp_id = pipeline()
    assert caller.task_run_id is not None

    async def parent(client):
        exp = await client.read_flow_run(exp_id)
        return await client.read_task_run(exp.parent_task_run_id)

    task_run = _read(prefect_server, parent)
    assert str(task_run.flow_run_id) == caller.flow_run_id
    assert [str(p.id) for p in task_run.task_inputs["__parents__"]] == [caller.task_run_id]


# --------------------------------------------------------------------------- logs
def _logs(api_url, flow_run_id):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return _read(api_url, lambda c: c.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200))


def test_trial_output_tracebacks_and_the_summary_are_logged_on_their_runs(prefect_server):
    rec = _recorder()
    # lines of a trial whose run is not created yet wait for it
    t0 = time.time() - 30.0
    rec.experiment_started("logged", {}, [])
    rec.trial_logs("t1", [LogLine(t0, logging.INFO, "stdout", "marker-early")])
    rec.trial_started("t1", "train_t1", {}, 1, 0)
    rec.trial_logs("t1", [LogLine(t0 + 1, logging.WARNING, "stderr", "marker-warn"),
                          LogLine(t0 + 2, logging.INFO, "my.logger", "marker-logger")])
    rec.trial_failed("t1", "Traceback (most recent call last):\nValueError: marker-boom", True)
    rec.trial_started("t1", "train_t1", {}, 1, 1)
    rec.trial_finished("t1", TrialOutcome.TERMINATED)
    rec.experiment_log(logging.INFO, "marker-progress")
    rec.experiment_finished(ExperimentOutcome.COMPLETED,
                            [{"trial_id": "t1", "status": "TERMINATED", "loss": 0.25}])
    assert rec.close(60) == []

    trial = {log.message: log for log in _logs(prefect_server, rec.trial_flow_run_id("t1"))}
    assert trial["marker-early"].level == logging.INFO and trial["marker-early"].name == "stdout"
    assert abs(trial["marker-early"].timestamp.timestamp() - t0) < 0.01   # its own time
    assert trial["marker-warn"].level == logging.WARNING
    assert trial["marker-logger"].name == "my.logger"
    [tb] = [log for log in trial.values() if "marker-boom" in log.message]
    assert tb.level == logging.ERROR and "Traceback" in tb.message

    exp = [log.message for log in _logs(prefect_server, rec.experiment_flow_run_id)]
    assert "marker-progress" in exp
    assert any(m.startswith("t1  TERMINATED") and "loss=0.25" in m for m in exp)


# --------------------------------------------------------------------------- cancel
def _set_cancelling(api_url, flow_run_id):
    from prefect.states import Cancelling

    _read(api_url, lambda c: c.set_flow_run_state(flow_run_id, Cancelling(), force=True))


def _state(api_url, flow_run_id):
    return _read(api_url, lambda c: c.read_flow_run(flow_run_id)).state


def test_cancel_in_prefect_reaches_the_engine_once_per_run(prefect_server):
    rec = _recorder()
    told = []
    rec.watch_cancel(told.append)
    _one_trial(rec, "cancelled", "t1")
    rec.trial_started("t2", "train_t2", {}, 0, 0)
    t1 = _wait_for(lambda: rec.trial_flow_run_id("t1"))
    _wait_for(lambda: rec.trial_flow_run_id("t2"))

    _set_cancelling(prefect_server, t1)
    _wait_for(lambda: "t1" in told)
    _set_cancelling(prefect_server, rec.experiment_flow_run_id)
    _wait_for(lambda: None in told)
    time.sleep(2.5)   # a few more polls: nobody is told twice
    assert told == ["t1", None]

    rec.trial_finished("t1", TrialOutcome.CANCELLED, "cancelled from the Prefect UI")
    rec.trial_finished("t2", TrialOutcome.INTERRUPTED, "")
    rec.experiment_finished(ExperimentOutcome.CANCELLED, [])
    assert rec.close(60) == []

    first, second = _state(prefect_server, t1), _state(prefect_server, rec.trial_flow_run_id("t2"))
    assert first.is_cancelled() and first.message == "cancelled from the Prefect UI"
    assert second.is_cancelled() and "interrupted" in second.message
    assert "resume" in second.message
    assert _state(prefect_server, rec.experiment_flow_run_id).is_cancelled()


# --------------------------------------------------------------------------- dead server
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_that_cannot_be_reached_gives_one_compact_summary():
    rec = _recorder(api_url=f"http://127.0.0.1:{_free_port()}/api")
    _one_trial(rec, "unreachable", results=50)
    rec.trial_finished("t1", TrialOutcome.TERMINATED)
    rec.experiment_finished(ExperimentOutcome.COMPLETED, [])
    missing = rec.close(120)
    assert "not recorded:" in missing[0] and "trial_result" in missing[0]
    assert "could not be reached" in missing[0] or "stopped answering" in missing[0]
    assert "within 120 s" not in missing[0] and len(missing) <= 8


@pytest.fixture
def own_server(tmp_path):
    """A Prefect server of its own (PREFECT_HOME in tmp_path), to be killed by the test."""
    import prefect

    from tunelib.prefect.server import wait_for_api

    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path), PREFECT_UI_ENABLED="0",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir",
         os.path.dirname(os.path.dirname(prefect.__file__)), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error"], env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_api(url, proc, 120, "the test's Prefect server")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_server_killed_mid_run_does_not_hold_close_back(own_server):
    url, proc = own_server
    rec = _recorder(api_url=url)
    _one_trial(rec, "killed", results=5)
    _wait_for(lambda: rec.trial_flow_run_id("t1"))
    _wait_for(lambda: rec.stats["by_kind"].get("task_run"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for i in range(6, 40):
        rec.trial_result("t1", {"training_iteration": i, "loss": 1 / i})
    rec.trial_finished("t1", TrialOutcome.TERMINATED)
    rec.experiment_finished(ExperimentOutcome.COMPLETED, [])
    said = []
    rec._progress = said.append
    missing = rec.close(120)
    assert "stopped answering" in missing[0], missing
    assert "within 120 s" not in missing[0]
    assert "not recorded:" in missing[0] and len(missing) <= 8
