"""A trial's output reaches the recorder, and Prefect used inside a trainable runs in the
trial's flow run.

The local executor is driven directly (start_trial / poll / decide, as the controller
does), with a recorder that keeps its calls; the Prefect test uses the real recorder on
the session's server.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import List

import cloudpickle
import pyarrow.fs as pafs
import pytest
from _controller_fakes import FakeRecorder

from tunelib._lifecycle import Decision
from tunelib.executor.base import EventKind, TrialEvent, TrialSpec
from tunelib.executor.local import LocalExecutor
from tunelib.recording import LogLine


def _run_trial(executor: LocalExecutor, trainable, storage: str, trial_id: str = "t1",
               timeout_s: float = 120.0) -> List[TrialEvent]:
    """Run one trial of ``trainable`` to its end, answering CONTINUE to every result."""
    executor.register_trainable("k", cloudpickle.dumps(trainable))
    executor.start_trial(TrialSpec(
        trial_id=trial_id, trial_name=f"trial_{trial_id}", trial_dirname=f"trial_{trial_id}",
        experiment_name="exp", experiment_uri=storage, trial_path=f"{storage}/trial_{trial_id}",
        trainable_key="k", config={}))
    events: List[TrialEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in executor.poll(0.2):
            events.append(event)
            if event.kind is EventKind.RESULT:
                executor.decide(event.trial_id, Decision.CONTINUE)
            else:
                return events
    raise AssertionError(f"trial {trial_id} did not end within {timeout_s:g} s: {events}")


def _lines(recorder: FakeRecorder, trial_id: str) -> List[LogLine]:
    return [line for call in recorder.of_trial(trial_id) if call.method == "trial_logs"
            for line in call.args["records"]]


def _chatty(config):
    import logging
    import sys
    import time

    from tunelib import tune

    print("MARKER-stdout")
    print("MARKER-stderr", file=sys.stderr)
    logging.getLogger("x").warning("MARKER-warning %d", 7)
    try:
        raise ValueError("MARKER-boom")
    except ValueError:
        logging.getLogger("x.y").exception("MARKER-caught")
    tune.report({"loss": 1.0})
    print("MARKER-after-report")
    time.sleep(1.5)  # longer than the worker's flush period: this line is sent alone
    tune.report({"loss": 0.5})
    print("MARKER-last", end="")  # no newline: still a line when the attempt ends


@pytest.fixture
def executor_with_recorder(tmp_path):
    storage = str(tmp_path / "exp")
    recorder = FakeRecorder()
    executor = LocalExecutor(1, storage_fs=pafs.LocalFileSystem(), experiment_path=storage,
                             recorder=recorder)
    executor.start()
    try:
        yield executor, recorder, storage
    finally:
        executor.shutdown()


def test_stdout_stderr_and_logging_of_a_trial_reach_the_recorder(executor_with_recorder):
    executor, recorder, storage = executor_with_recorder
    started = time.time()
    events = _run_trial(executor, _chatty, storage)
    ended = time.time()
    assert events[-1].kind is EventKind.DONE
    lines = _lines(recorder, "t1")
    by_message = {line.message.split("\n")[0]: line for line in lines}

    assert (by_message["MARKER-stdout"].level, by_message["MARKER-stdout"].logger) == \
        (logging.INFO, "stdout")
    assert (by_message["MARKER-stderr"].level, by_message["MARKER-stderr"].logger) == \
        (logging.WARNING, "stderr")
    assert (by_message["MARKER-warning 7"].level, by_message["MARKER-warning 7"].logger) == \
        (logging.WARNING, "x")
    caught = by_message["MARKER-caught"]
    assert caught.level == logging.ERROR and caught.logger == "x.y"
    assert "Traceback" in caught.message and "ValueError: MARKER-boom" in caught.message
    assert "MARKER-after-report" in by_message and "MARKER-last" in by_message
    assert all(started <= line.t <= ended for line in lines)


def test_a_logged_record_is_captured_once_not_again_as_stderr(executor_with_recorder):
    executor, recorder, storage = executor_with_recorder
    _run_trial(executor, _chatty, storage)  # logging's last-resort handler prints to stderr
    messages = [line.message for line in _lines(recorder, "t1")]
    assert sum("MARKER-warning 7" in m for m in messages) == 1
    assert sum("MARKER-caught" in m for m in messages) == 1


def test_lines_arrive_in_batches_in_order(executor_with_recorder):
    executor, recorder, storage = executor_with_recorder
    _run_trial(executor, _chatty, storage)
    batches = [c for c in recorder.of_trial("t1") if c.method == "trial_logs"]
    assert 2 <= len(batches) <= 4  # with the results, one alone (the sleep), the end
    stamps = [line.t for line in _lines(recorder, "t1")]
    assert stamps == sorted(stamps)


def _loud(config):
    print("x" * 50_000)


def test_a_huge_line_is_cut(executor_with_recorder):
    executor, recorder, storage = executor_with_recorder
    _run_trial(executor, _loud, storage)
    lines = _lines(recorder, "t1")
    assert lines and all(len(line.message) < 10_100 for line in lines)
    assert "more characters cut" in lines[0].message


def _quiet(config):
    print("MARKER-unrecorded")


def test_nothing_is_captured_without_a_recorder(tmp_path, capfd):
    storage = str(tmp_path / "exp")
    executor = LocalExecutor(1, storage_fs=pafs.LocalFileSystem(), experiment_path=storage)
    executor.start()
    try:
        events = _run_trial(executor, _quiet, storage)
    finally:
        executor.shutdown()
    assert events[-1].kind is EventKind.DONE
    assert "MARKER-unrecorded" in capfd.readouterr().out  # still printed by the worker


# ------------------------------------------------------------------ Prefect in a trainable


def _trainable_calling_a_task():
    """A trainable that calls a user's @task; defined in a function, so that it travels by
    value and its task with it: the worker imports Prefect when it loads the trainable, as
    it would import a user's module that defines tasks."""
    from prefect import task

    @task(name="user-step")
    def step(x):
        return x + 1

    def trainable(config):
        from tunelib import tune

        tune.report({"y": step(1)})

    return trainable


def test_a_task_called_in_a_trainable_is_a_task_run_of_the_trial(
        prefect_server, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    from tunelib.prefect import create_recorder

    recorder = create_recorder(enabled=True)
    name = f"logs-{uuid.uuid4().hex[:8]}"
    storage = str(tmp_path / name)
    recorder.experiment_started(name, {}, [])
    recorder.trial_started("t1", "trial_t1", {}, 0, 1)
    executor = LocalExecutor(1, storage_fs=pafs.LocalFileSystem(), experiment_path=storage,
                             recorder=recorder)
    executor.start()
    try:
        events = _run_trial(executor, _trainable_calling_a_task(), storage)
    finally:
        executor.shutdown()
        recorder.close(60)
    assert events[0].kind is EventKind.RESULT and events[0].result["y"] == 2
    assert events[-1].kind is EventKind.DONE

    trial_run = _flow_run_tagged([name, "t1"])
    task_runs = _task_runs_named("user-step", str(trial_run.id))
    assert [str(run.flow_run_id) for run in task_runs] == [str(trial_run.id)]
    output = capfd.readouterr()
    assert "database is locked" not in output.out + output.err


def _read(query):
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await query(client)

    return asyncio.run(read())


def _flow_run_tagged(tags):
    """The one flow run with all of ``tags`` (the recorder tags a trial's run with the
    experiment's name and the trial id)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    runs = _read(lambda client: client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags))))
    assert len(runs) == 1, runs
    return runs[0]


def _task_runs_named(name: str, flow_run_id: str, timeout_s: float = 30.0):
    """The task runs called ``name*`` of the flow run (the server records task runs from
    events: they show up a moment later)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    while True:
        runs = _read(lambda client: client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))))
        runs = [run for run in runs if run.name.startswith(name)]
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)
