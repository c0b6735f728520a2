"""The Prefect recorder: the engine-facing interface (fast) and an end-to-end record of a
fake experiment read back through Prefect's client (slow: starts an embedded server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

# A private PREFECT_HOME before anything imports prefect (tests/conftest.py may already
# have set one for the whole session: keep it then).
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tunelib-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def isolated_prefect(monkeypatch):
    """No user-configured API: the recorder must start its own embedded server. (Per test:
    a session-wide one left the tests after it without the session server's
    PREFECT_API_URL, so they recorded into another server than the one they read.)"""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return os.environ["PREFECT_HOME"]


# --------------------------------------------------------------------------- fast tests
def test_interface_imports_no_prefect():
    """The engine's side, the recorder's module and the workers executor import Prefect only
    when they use it (on the recorder's thread, in the executor's start())."""
    code = (
        "import sys; import tunelib.recording, tunelib.prefect, tunelib.prefect.recorder,"
        " tunelib.prefect.server, tunelib.executor.prefect_workers;"
        "r = tunelib.recording.NullRecorder(); r.trial_result('a', {});"
        "print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "False"


def test_null_recorder():
    from tunelib.prefect import create_recorder
    from tunelib.recording import NullRecorder, Recorder

    r = create_recorder(enabled=False)
    assert isinstance(r, NullRecorder) and isinstance(r, Recorder)
    r.experiment_started("e", {}, [])
    r.trial_attached("t", "00000000-0000-0000-0000-000000000000")
    r.trial_started("t", "n", {}, 0, 0)
    r.trial_result("t", {"training_iteration": 1})
    r.trial_failed("t", "x", False)
    r.trial_finished("t", "ERROR")
    r.trial_paused("t")
    r.experiment_finished("COMPLETED", [])
    assert r.close(1.0) == []
    assert r.stats["writes"] == 0


def test_caller_side_only_enqueues(monkeypatch):
    """Each call puts one timestamped event on the queue and returns: no Prefect import, no
    write, the result handed over as is. (Its speed: bench/recorder_enqueue_bench.py.)"""
    from tunelib.recording import QueueRecorder

    monkeypatch.setitem(sys.modules, "prefect", None)  # any Prefect import now fails
    r = QueueRecorder()
    result = {"training_iteration": 1, "loss": 0.5}
    before = time.time()
    r.trial_started("t", "fn_t", {"a": 1}, 2, 0)
    r.trial_result("t", result)
    r.trial_finished("t", "TERMINATED")
    events = [r._q.get_nowait() for _ in range(r._q.qsize())]
    assert [kind for kind, _, _ in events] == ["trial_started", "trial_result", "trial_finished"]
    _, t, args = events[1]
    assert args == ("t", result) and args[1] is result and before <= t <= time.time()
    assert r.stats["writes"] == 0


def test_trial_attached_is_queued_in_order_with_the_other_events():
    from tunelib.recording import QueueRecorder

    r = QueueRecorder()
    r.trial_attached("t", "run-1")
    r.trial_started("t", "fn_t", {}, 0, 0)
    events = [r._q.get_nowait() for _ in range(r._q.qsize())]
    assert [(kind, args) for kind, _, args in events] == [
        ("trial_attached", ("t", "run-1")), ("trial_started", ("t", "fn_t", {}, 0, 0))]


def test_helpers():
    from tunelib.prefect._payloads import (
        UNLIMITED_RETRIES,
        artifact_key,
        metrics_text,
        retries_for,
        task_run_name,
    )

    assert artifact_key("My Exp_2026 11") == "my-exp-2026-11-summary"
    text = metrics_text({"loss": 0.123456789, "training_iteration": 3, "pid": 7, "ok": True,
                         "config": {"a": 1}})
    assert text == "loss=0.123457, ok=True"
    assert retries_for(-1) == UNLIMITED_RETRIES and retries_for(2) == 2 and retries_for(0) == 0
    assert retries_for(2, failures=1) == 1 and retries_for(1, failures=3) == 0
    assert retries_for(-1, failures=5) == UNLIMITED_RETRIES
    assert task_run_name(3, 3) == "iteration 3" and task_run_name(3, 7) == "iteration 3-7"


def test_payloads_are_json_safe():
    import json

    from tunelib.prefect._payloads import jsonable

    value = jsonable({"loss": float("nan"), "best": float("inf"), 1: (1, 2), "obj": object()})
    assert value["loss"] is None and value["best"] is None and value["1"] == [1, 2]
    json.dumps(value, allow_nan=False)


def test_503_answers_are_counted_by_the_client_hook_including_retried_ones():
    """A server answering 503 twice (Retry-After: 0) then 200: the client retries and the
    response hook the recorder installs counts both 503s, with no logger touched."""
    import asyncio
    import json
    import logging
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prefect.client.orchestration import PrefectClient

    from tunelib.prefect._writes import count_503s

    answers = [503, 503, 200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code = answers.pop(0) if answers else 200
            body = json.dumps({"id": "00000000-0000-0000-0000-000000000001"}).encode()
            self.send_response(code)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # the client's CSRF token request: "an older server"
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    level = logging.getLogger("prefect.client").level
    stats = {"retries_503": 0}

    async def post():
        url = f"http://127.0.0.1:{server.server_address[1]}/api"
        hooks = {"event_hooks": {"response": [count_503s(stats)]}}
        async with PrefectClient(api=url, httpx_settings=hooks) as client:
            return await client.create_flow_from_name("trial")

    try:
        flow_id = asyncio.run(post())
    finally:
        server.shutdown()
    assert str(flow_id).endswith("1")
    assert stats["retries_503"] == 2
    assert logging.getLogger("prefect.client").level == level


def test_close_is_bounded_when_the_api_hangs(isolated_prefect):
    """An API that accepts connections and never answers: close() returns in time and
    lists what was not recorded."""
    from tunelib.prefect import create_recorder

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    try:
        r = create_recorder(api_url=url)
        r.experiment_started("hang", {}, [])
        r.trial_started("t1", "fn_t1", {}, 0, 0)
        for i in range(1, 4):
            r.trial_result("t1", {"training_iteration": i})
        r.trial_finished("t1", "TERMINATED")
        t0 = time.monotonic()
        missing = r.close(3.0)
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    assert elapsed < 8.0
    assert missing and "not recorded" in missing[0]
    joined = "\n".join(missing)
    assert "experiment" in joined and "fn_t1" in joined


# --------------------------------------------------------------------------- end to end
N = 50


def _drive(r, exp_name):
    r.experiment_started(exp_name, {"num_samples": 4, "metric": "loss"}, ["e2e"])
    cfg = {f"t{i}": {"lr": 10.0 ** -i, "layers": [i, i + 1]} for i in range(4)}
    r.trial_started("t0", f"train_fn_{exp_name}_00000", cfg["t0"], 2, 0)  # fails once
    r.trial_started("t1", f"train_fn_{exp_name}_00001", cfg["t1"], 1, 0)  # fails for good
    r.trial_started("t2", f"train_fn_{exp_name}_00002", cfg["t2"], 0, 0)  # stopped early
    r.trial_started("t3", f"train_fn_{exp_name}_00003", cfg["t3"], 0, 0)  # paused, resumed
    t1_failures = 0
    for it in range(1, N + 1):
        for tid in ("t0", "t1", "t2", "t3"):
            r.trial_result(tid, {"training_iteration": it, "loss": 1.0 / it + int(tid[1]),
                                 "time_this_iter_s": 0.03})
        if it == 20:
            r.trial_failed("t0", "ValueError: transient", will_retry=True)
            r.trial_started("t0", f"train_fn_{exp_name}_00000", cfg["t0"], 2, 1)
        if it in (15, 30):  # t1 fails twice: max_failures=1 -> retried once, then ERROR
            t1_failures += 1
            r.trial_failed("t1", "RuntimeError: broken", will_retry=t1_failures <= 1)
            if t1_failures <= 1:
                r.trial_started("t1", f"train_fn_{exp_name}_00001", cfg["t1"], 1, 1)
        if it == 25:
            r.trial_paused("t3")
            r.trial_started("t3", f"train_fn_{exp_name}_00003", cfg["t3"], 0, 1)
        time.sleep(0.03)
    r.trial_finished("t0", "TERMINATED")
    r.trial_finished("t1", "ERROR", "RuntimeError: broken")
    r.trial_finished("t2", "STOPPED", "stopped early by AsyncHyperBandScheduler")
    r.trial_finished("t3", "TERMINATED")
    rows = [{"trial": f"train_fn_{exp_name}_0000{i}", "status": s, "loss": 1.0 / N + i}
            for i, s in enumerate(["TERMINATED", "ERROR", "TERMINATED", "TERMINATED"])]
    r.experiment_finished("COMPLETED", rows)


@pytest.mark.slow
def test_records_an_experiment(isolated_prefect):
    from tunelib.prefect import create_recorder

    exp_name = "e2e_rec"
    r = create_recorder(window=0.5)
    deadline = time.monotonic() + 150
    while r.api_url is None and time.monotonic() < deadline:  # let it boot, then drive
        time.sleep(0.2)
    assert r.api_url
    assert r.api_url.startswith("http")
    _drive(r, exp_name)
    missing = r.close(120)
    assert missing == []
    assert r.stats["writes"] > 0 and r.stats["writes_failed"] == 0
    assert isinstance(r.stats["retries_503"], int)

    # the server is stopped at close(): read back through a fresh one on the same database
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer(port=_free_port())
    server.start(timeout=120)
    try:
        import asyncio

        asyncio.run(_check(server.api_url, exp_name, r))
    finally:
        server.stop()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _check(api_url, exp_name, r):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import Artifact
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    # Explicit limit and sort: with fastapi >= 0.151 (excluded by pyproject) the server
    # rejected the null values Prefect 3.8.8 sends for them with 422.
    KW = dict(limit=200, sort=FlowRunSort.ID_DESC)
    async with PrefectClient(api=api_url) as client:
        exp_runs = await client.read_flow_runs(
            **KW, flow_filter=FlowFilter(name=FlowFilterName(any_=["experiment"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[exp_name])))
        assert len(exp_runs) == 1
        exp = exp_runs[0]
        assert exp.name == exp_name and exp_name in exp.tags and "e2e" in exp.tags
        assert exp.parameters == {"num_samples": 4, "metric": "loss"}
        assert exp.state.is_completed()

        trials = await client.read_flow_runs(
            **KW, flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[exp_name])))
        by_tid = {}
        for fr in trials:
            tid = next(t for t in fr.tags if t in ("t0", "t1", "t2", "t3"))
            by_tid[tid] = fr
        assert sorted(by_tid) == ["t0", "t1", "t2", "t3"] and len(trials) == 4

        children = await client.read_flow_runs(**KW, flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[exp.id])))
        assert {c.id for c in children} == {fr.id for fr in trials}

        for i, tid in enumerate(["t0", "t1", "t2", "t3"]):
            fr = by_tid[tid]
            assert fr.name == f"train_fn_{exp_name}_0000{i}"
            assert fr.parameters == {"config": {"lr": 10.0 ** -i, "layers": [i, i + 1]}}
            parent = await client.read_task_run(fr.parent_task_run_id)
            assert parent.flow_run_id == exp.id
            assert parent.state.type == fr.state.type  # mirrored by the server

            tasks = await client.read_task_runs(
                limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
            assert tasks and all(t.name.startswith("iteration ") for t in tasks)
            covered = set()
            for t in tasks:
                rng = t.name.split(" ", 1)[1]
                a, _, b = rng.partition("-")
                covered.update(range(int(a), int(b or a) + 1))
                assert t.state.is_completed() and "loss=" in (t.state.message or "")
            assert covered == set(range(1, N + 1)), (tid, sorted(covered))

        t0 = by_tid["t0"]
        assert t0.state.is_completed() and t0.run_count == 2
        assert t0.empirical_policy.retries == 2
        names = [s.name for s in await client.read_flow_run_states(t0.id)]
        assert "AwaitingRetry" in names and "Retrying" in names, names

        t1 = by_tid["t1"]
        assert t1.state.is_failed() and t1.run_count == 2
        names = [s.name for s in await client.read_flow_run_states(t1.id)]
        assert names.count("AwaitingRetry") == 1 and names[-1] == "Failed", names

        t2 = by_tid["t2"]
        assert t2.state.is_completed() and t2.state.name == "Stopped"
        assert "AsyncHyperBandScheduler" in t2.state.message

        t3 = by_tid["t3"]
        names = [s.name for s in await client.read_flow_run_states(t3.id)]
        assert "Paused" in names and "Resumed" in names and t3.state.is_completed(), names

        # (client.read_artifacts sends "flow_runs": null, which this server rejects)
        resp = await client._client.post("/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [str(exp.id)]}}, "limit": 50})
        arts = {a.key: a for a in (Artifact.model_validate(a) for a in resp.json())}
        assert set(arts) == {"e2e-rec-leaderboard", "e2e-rec-progress", "e2e-rec-curves"}
        assert arts["e2e-rec-leaderboard"].type == "table"
        assert "train_fn_" in str(arts["e2e-rec-leaderboard"].data)
    print("recorder stats:", r.stats)
