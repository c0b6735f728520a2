"""The Prefect API an experiment records into (tunelib.prefect.server): one embedded
server per PREFECT_HOME, shared by the experiments that use it and gone with the last of
them; one clear error for a server that does not answer; the line that says where to look.

The sharing tests run real experiment-side processes on a fresh PREFECT_HOME (each boots
a server on a new database: ~10-20 s).
"""

from __future__ import annotations

import doctest
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tunelib.prefect import _where
from tunelib.prefect._caller import CallerRun
from tunelib.prefect._where import where_to_look
from tunelib.prefect.server import STATE_FILE, PrefectServerUnavailable, ServerHandle, pid_alive

# An experiment's use of the server: start, wait, one write, then (argv[2]) hold it for
# that many seconds or until killed; prints what it saw as one JSON line.
USER = textwrap.dedent("""
    import asyncio, json, os, sys, time
    from tunelib.prefect.server import ServerHandle, STATE_FILE
    handle = ServerHandle(export_env=False).start()
    url = handle.wait_ready(300)
    with open(os.path.join(os.environ["PREFECT_HOME"], STATE_FILE)) as f:
        pid = json.load(f)["pid"]
    from prefect.client.orchestration import PrefectClient
    async def write():
        async with PrefectClient(api=url) as client:
            return await client.create_flow_from_name("tunelib-test-" + sys.argv[1])
    flow_id = asyncio.run(write())
    print(json.dumps({"api_url": url, "pid": pid, "flow_id": str(flow_id),
                      "startup_s": handle.startup_seconds}), flush=True)
    time.sleep(float(sys.argv[2]))
    handle.stop()
""")


def _env(home) -> dict:
    env = dict(os.environ, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    return env


def _user(home, name: str, hold_s: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", USER, name, str(hold_s)], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _seen(proc: subprocess.Popen) -> dict:
    """The JSON line a user printed once its write went through."""
    line = proc.stdout.readline()
    assert line, f"the user process failed: {proc.wait()} {proc.stderr.read()}"
    return json.loads(line)


def _wait_gone(pid: int, limit_s: float = 30.0) -> bool:
    deadline = time.monotonic() + limit_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pid_alive(pid)


def _health(api_url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
        return response.status


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api"


@pytest.mark.slow
def test_two_experiments_started_at_once_share_one_server_that_ends_with_them(tmp_path):
    home = tmp_path / "prefect"
    users = [_user(home, "a"), _user(home, "b")]
    seen = [_seen(p) for p in users]
    for proc in users:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert seen[0]["api_url"] == seen[1]["api_url"]
    assert seen[0]["pid"] == seen[1]["pid"]
    assert seen[0]["flow_id"] != seen[1]["flow_id"]
    assert _wait_gone(seen[0]["pid"]), "the server outlived its last user"
    assert not (home / STATE_FILE).exists()


@pytest.mark.slow
def test_the_server_outlives_a_killed_launcher_and_goes_with_its_last_user(tmp_path):
    home = tmp_path / "prefect"
    launcher = _user(home, "launcher", hold_s=600)
    first = _seen(launcher)
    other = _user(home, "other", hold_s=600)
    second = _seen(other)
    assert second["pid"] == first["pid"]
    launcher.send_signal(signal.SIGKILL)
    launcher.communicate()
    time.sleep(2.5)  # longer than the server's idle limit: it would have gone by now
    assert _health(second["api_url"]) == 200
    other.send_signal(signal.SIGKILL)
    other.communicate()
    assert _wait_gone(first["pid"]), "a user killed with SIGKILL kept the server"
    assert not (home / STATE_FILE).exists()


def test_a_closed_port_gives_one_clear_error(monkeypatch):
    url = _closed_port_url()
    monkeypatch.setenv("PREFECT_API_URL", url)
    handle = ServerHandle().start()
    with pytest.raises(PrefectServerUnavailable) as info:
        handle.wait_ready(30)
    message = str(info.value)
    assert f"no Prefect server answers at {url} (PREFECT_API_URL)" in message
    assert "`prefect server start`" in message and "unset PREFECT_API_URL" in message
    assert "this experiment is not recorded in Prefect" in message
    assert handle.error is info.value
    assert not handle.alive()
    handle.stop()  # nothing to stop


def test_a_closed_port_costs_the_recorder_no_stream_of_warnings(tmp_path):
    script = textwrap.dedent("""
        from tunelib.prefect.recorder import PrefectRecorder
        rec = PrefectRecorder(window=0.05)
        rec.experiment_started("exp", {"num_samples": 1}, [])
        rec.trial_result("t1", {"loss": 1.0})
        print("\\n".join(rec.close(30)))
    """)
    env = dict(os.environ, PREFECT_API_URL=_closed_port_url())
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no Prefect server answers at" in proc.stdout
    assert len(proc.stderr.splitlines()) < 3, proc.stderr


def test_an_api_url_that_is_not_an_api_says_so():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        handle = ServerHandle(api_url=url).start()
        with pytest.raises(PrefectServerUnavailable, match=r"HTTP 404 .* ending in /api"):
            handle.wait_ready(30)
    finally:
        server.shutdown()


def test_a_caller_run_is_used_as_given_and_named_so(prefect_server):
    caller = CallerRun(prefect_server, "0f1e")
    handle = ServerHandle(caller=caller).start()
    assert handle.wait_ready(30) == prefect_server
    assert not handle.embedded
    assert handle.alive()
    assert handle.describe() == f"the Prefect server of the calling flow run at {prefect_server}"
    handle.stop()
    assert _health(prefect_server) == 200  # not ours to stop


def test_a_caller_run_and_an_api_url_together_are_refused():
    with pytest.raises(ValueError, match="both api_url"):
        ServerHandle("http://127.0.0.1:4200/api", caller=CallerRun("http://x/api", "0f1e"))


def test_describe_names_where_the_server_comes_from(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert ServerHandle().describe() == (
        f"the embedded Prefect server (database {tmp_path}/prefect.db)")
    monkeypatch.setenv("PREFECT_API_URL", "http://h:4200/api")
    assert ServerHandle().describe() == "the Prefect server at http://h:4200/api (PREFECT_API_URL)"
    assert ServerHandle("http://g/api").describe() == "the Prefect server at http://g/api (api_url)"


def test_where_to_look_links_a_server_with_a_ui(monkeypatch):
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    assert (where_to_look("http://10.0.0.5:4200/api/", "abc", False, "/unused")
            == "Recorded in Prefect: http://10.0.0.5:4200/runs/flow-run/abc")
    monkeypatch.setenv("PREFECT_UI_URL", "https://prefect.example.org/")
    assert (where_to_look("http://10.0.0.5:4200/api", "abc", False, "/unused")
            == "Recorded in Prefect: https://prefect.example.org/runs/flow-run/abc")


def test_where_to_look_tells_how_to_open_the_embedded_servers_database(monkeypatch):
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", "/data/my prefect")
    assert where_to_look("http://127.0.0.1:50123/api", "abc", True, "/data/my prefect") == (
        "Recorded in Prefect (flow run abc, database /data/my prefect/prefect.db); to look: "
        "`PREFECT_HOME='/data/my prefect' prefect server start` then open "
        "http://127.0.0.1:4200/runs/flow-run/abc")
    monkeypatch.delenv("PREFECT_HOME")
    home = os.path.expanduser("~/.prefect")
    assert where_to_look("http://127.0.0.1:50123/api", "abc", True, home) == (
        f"Recorded in Prefect (flow run abc, database {home}/prefect.db); to look: "
        "`prefect server start` then open http://127.0.0.1:4200/runs/flow-run/abc")


def test_where_examples_hold(monkeypatch):
    for key in ("PREFECT_UI_URL", "PREFECT_API_DATABASE_CONNECTION_URL",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_HOME", "/p")
    result = doctest.testmod(_where)
    assert result.attempted >= 4 and result.failed == 0


def test_where_to_look_does_not_import_prefect():
    script = ("import sys; from tunelib.prefect._where import where_to_look; "
              "where_to_look('http://h/api', 'x', False, '/p'); "
              "where_to_look('http://h/api', 'x', True, '/p'); "
              "print(any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
