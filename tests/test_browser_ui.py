"""What a user sees in Prefect's UI, rendered by a real browser.

A Prefect server with its UI (``prefect server start``, on a free port, its own
PREFECT_HOME) records a small experiment; headless Chromium (Debian's ``chromium``
package; ``.ci/run`` installs it) opens the experiment's flow-run page, its leaderboard
artifact, its learning curves and a trial's run and metric table. The browser is driven
through the DevTools protocol (``websockets``, which Prefect depends on): the UI is a Vue
app, so each check waits until the rendered text (``document.body.innerText``) holds what
it looks for, then takes a screenshot - into ``$TUNELIB_UI_SCREENSHOTS`` when set (CI can
keep them), else the test's temp dir.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
from _prefect_reads import artifacts, experiment_runs

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium "
                       "(apt-get install chromium; .ci/run installs it)"),
]

SERVER_START_S = 240   # a first start migrates a fresh database: tens of seconds when busy
RENDER_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """``prefect server start`` with the UI; yields its address. Stopped by its group id."""
    from tunelib.prefect.server import EMBEDDED_SERVER_ENV

    port = _free_port()
    home = tmp_path_factory.mktemp("prefect-ui-home")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # the UI finds its API from these (the --host/--port arguments leave it calling :4200)
    env.update(EMBEDDED_SERVER_ENV, PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1",
               PREFECT_SERVER_API_PORT=str(port))
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prefect server start exited: {(home / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server start did not answer in {SERVER_START_S} s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


class Browser:
    """Headless Chromium driven through the DevTools protocol (one page)."""

    def __init__(self, width: int = 1600, height: int = 1100):
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="tunelib-chromium-")
        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = os.path.join(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self._ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=RENDER_S))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, *texts: str) -> str:
        """The page's rendered text once it holds every one of ``texts``."""
        deadline = time.monotonic() + RENDER_S
        while True:
            body = self.text()
            missing = [t for t in texts if t not in body]
            if not missing:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"not on the page after {RENDER_S} s: {missing}\n{body}")
            time.sleep(0.3)

    def click(self, element_id: str) -> None:
        self.js(f"document.getElementById({json.dumps(element_id)}).click()")

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            shutil.rmtree(self._profile, ignore_errors=True)


def ui_trainable(config):
    import tempfile

    from tunelib import tune

    for i in range(config["iters"]):
        time.sleep(0.1)
        metrics = {"loss": config["lr"] / (i + 1)}
        if i == config["iters"] - 1:
            with tempfile.TemporaryDirectory() as d:
                open(os.path.join(d, "w.txt"), "w").close()
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


def _records(api_url: str, name: str):
    """The experiment's flow run and its trials' runs; the latest version of each of
    their artifacts, by key."""
    runs = experiment_runs(api_url, name)
    ids = [str(fr.id) for fr in runs["experiment"] + runs["trial"]]
    latest = {}
    for a in artifacts(api_url, flow_run_id={"any_": ids}):   # newest first
        latest.setdefault(a.key, a)
    return runs, latest


def test_the_ui_shows_the_leaderboard_the_trials_and_their_metric_tables(
        ui_server, storage_dir, monkeypatch, tmp_path):
    from tunelib import tune

    name = "ui-exp"
    monkeypatch.setenv("PREFECT_API_URL", f"{ui_server}/api")
    grid = tune.Tuner(
        ui_trainable,
        param_space={"lr": tune.grid_search([0.3, 0.1, 0.2]), "iters": 4},
        tune_config=tune.TuneConfig(metric="loss", mode="min", max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=storage_dir, verbose=0),
    ).fit()
    runs, latest = _records(f"{ui_server}/api", name)
    [exp] = runs["experiment"]
    trial_names = sorted(fr.name for fr in runs["trial"])
    best = grid.get_best_result()
    best_run = next(fr for fr in runs["trial"] if fr.name.endswith(best.metrics["trial_id"]))
    best_loss = f"{best.metrics['loss']:.6g}"           # as the leaderboard rounds it
    shots = os.environ.get("TUNELIB_UI_SCREENSHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)

    browser = Browser()
    try:
        # the experiment's run: its trials as sub-runs, its artifacts
        browser.open(f"{ui_server}/runs/flow-run/{exp.id}")
        browser.wait_for(name, "Subflow Runs")
        browser.click("subflow-runs")
        browser.wait_for(*trial_names)
        browser.screenshot(os.path.join(shots, "experiment-subflow-runs.png"))
        browser.click("artifacts")
        browser.wait_for(f"{name}-leaderboard", f"{name}-progress", f"{name}-curves",
                         "3 of 3 trials finished")
        browser.screenshot(os.path.join(shots, "experiment-artifacts.png"))

        # the leaderboard: every trial, the best one marked with its metric
        browser.open(f"{ui_server}/artifacts/artifact/{latest[f'{name}-leaderboard'].id}")
        browser.wait_for(*trial_names, f"Best: {best_run.name}")
        rows = browser.js("[...document.querySelectorAll('tr')].map(r => r.innerText)")
        best_row = next(r for r in rows if best_run.name in r)
        assert "★" in best_row and best_loss in best_row, best_row
        browser.screenshot(os.path.join(shots, "leaderboard.png"))

        # the learning curves: the inline SVG survives the UI's sanitizer
        browser.open(f"{ui_server}/artifacts/artifact/{latest[f'{name}-curves'].id}")
        browser.wait_for("Learning curves: loss", "tunelib plot")
        assert browser.js("document.querySelectorAll('svg polyline').length") >= 3
        browser.screenshot(os.path.join(shots, "learning-curves.png"))

        # the best trial's run: its metric table and checkpoint links
        metrics_key = next(k for k in latest if k.endswith("-metrics")
                           and latest[k].flow_run_id == best_run.id)
        checkpoints_key = metrics_key.removesuffix("-metrics") + "-checkpoints"
        browser.open(f"{ui_server}/runs/flow-run/{best_run.id}")
        browser.wait_for(best_run.name, "Artifacts")
        browser.click("artifacts")
        browser.wait_for(metrics_key, checkpoints_key)
        browser.screenshot(os.path.join(shots, "trial-artifacts.png"))
        browser.open(f"{ui_server}/artifacts/artifact/{latest[metrics_key].id}")
        body = browser.wait_for("training_iteration", "loss", best_run.name)
        assert best_loss in body
        assert browser.js("document.querySelectorAll('svg polyline').length") >= 1
        browser.screenshot(os.path.join(shots, "trial-metrics.png"))
        browser.open(f"{ui_server}/artifacts/artifact/{latest[checkpoints_key].id}")
        browser.wait_for("Latest", os.path.basename(best.checkpoint.path))
        browser.screenshot(os.path.join(shots, "trial-checkpoints.png"))
    finally:
        browser.close()
