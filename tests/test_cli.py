"""The ``tunelib`` command line, end to end: ``ls``, ``show``, ``plot`` and ``ui`` on an
experiment tunelib runs here and on experiments Ray 2.60 wrote (fixtures); the status table
as data (``tunelib.cli._table``) against Trial records."""

import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunelib import tune
from tunelib._lifecycle import TrialStatus
from tunelib.cli import _ui, app
from tunelib.cli._table import current_best_trial, format_cell, status_table
from tunelib.trial import Trial

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str):
    """``tunelib ARGS`` in this process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, list(args))


def table_rows(output: str, first_cell: str):
    """The cells of every table row of ``output`` whose first cell starts with
    ``first_cell`` (stdout is not a terminal: Ray's ``| a | b |`` rows)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in output.splitlines() if line.startswith("| ")]
    return [r for r in rows if r[0].startswith(first_cell)]


def _train(config):
    for i in range(4):
        if config["lr"] > 0.5 and i == 2:
            raise ValueError("diverged")
        tune.report({"loss": config["lr"] / (i + 1), "acc": 1 - config["lr"] / (i + 1)})


@pytest.fixture(scope="module")
def tunelib_storage(tmp_path_factory):
    """A storage dir with one tunelib experiment, "grid": lr 0.01 and 0.1 terminate
    (best: 0.01, loss 0.0025), lr 1.0 fails at its third report."""
    storage = tmp_path_factory.mktemp("tunelib_results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELIB_DISABLE_PREFECT", "1")
        tune.Tuner(
            _train,
            param_space={"lr": tune.grid_search([0.01, 0.1, 1.0])},
            tune_config=tune.TuneConfig(metric="loss", mode="min"),
            run_config=tune.RunConfig(name="grid", storage_path=str(storage), verbose=0),
        ).fit()
    return storage


@pytest.fixture(scope="module")
def ray_storage(tmp_path_factory):
    """A writable copy of the Ray-written experiments (the fixtures are read-only)."""
    dest = tmp_path_factory.mktemp("ray") / "ray-2.60"
    shutil.copytree(FIXTURES, dest)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(dest, 0o755)
    return dest


# ------------------------------------------------------------------ ls


def test_ls_lists_a_tunelib_experiment_with_trials_statuses_and_best(tunelib_storage):
    result = run_cli("ls", str(tunelib_storage))
    assert result.exit_code == 0, result.output
    [row] = table_rows(result.stdout, "grid")
    name, started, trials, statuses, best, best_trial = row
    assert started.startswith("20") and trials == "3"
    assert statuses == "1 ERROR, 2 TERMINATED"
    assert best == "loss=0.0025 (min)" and best_trial.endswith("_00000")


def test_ls_lists_ray_experiments_with_what_their_state_records(ray_storage):
    result = run_cli("ls", str(ray_storage))
    assert result.exit_code == 0, result.output
    assert f"Experiments in {ray_storage}: 5" in result.stdout
    rows = {r[0]: r for r in table_rows(result.stdout, "") if r[0] != "Experiment"}
    assert set(rows) == {"extras_class", "extras_meta", "extras_tune_run", "layout_fail",
                         "layout_grid"}
    assert rows["layout_grid"][1].startswith("2026-11-2")  # Ray's _start_time, local time
    assert rows["layout_grid"][2:4] == ["3", "3 TERMINATED"]
    assert rows["layout_fail"][2:4] == ["2", "1 ERROR, 1 TERMINATED"]
    # Ray's state records the metric but not the mode: no best value is guessed
    assert rows["layout_grid"][4:] == ["loss (mode not recorded)", ""]


def test_ls_defaults_to_tune_result_dir(tunelib_storage, monkeypatch):
    monkeypatch.setenv("TUNE_RESULT_DIR", str(tunelib_storage))
    result = run_cli("ls")
    assert result.exit_code == 0, result.output
    assert f"Experiments in {tunelib_storage}: 1" in result.stdout and "| grid " in result.stdout


def test_ls_of_a_missing_storage_dir_exits_2_naming_it(tmp_path):
    result = run_cli("ls", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert f"No storage directory at {tmp_path / 'nowhere'}" in result.stderr


def test_ls_does_not_import_prefect_or_matplotlib(ray_storage):
    code = ("import sys\nfrom tunelib.cli import main\n"
            f"sys.argv = ['tunelib', 'ls', {str(ray_storage)!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', 'prefect' in sys.modules, 'matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "IMPORTED False False" in out.stdout, out.stderr


# ------------------------------------------------------------------ show


def test_show_prints_rays_status_table_of_a_tunelib_experiment(tunelib_storage):
    exp = tunelib_storage / "grid"
    result = run_cli("show", str(exp))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("== Status ==\nExperiment: grid (started ")
    assert "Current best trial: " in out and "with loss=0.0025 and parameters={'lr': 0.01}" in out
    assert f"Result logdir: {exp}" in out
    assert "Number of trials: 3 (1 ERROR, 2 TERMINATED)" in out
    header = next(line for line in out.splitlines() if "Trial name" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Trial name", "status", "loc", "lr", "iter", "total time (s)", "loss", "acc"]
    rows = table_rows(out, "_train_")
    # Ray's order: terminated trials, then errored ones
    assert [r[1] for r in rows[:3]] == ["TERMINATED", "TERMINATED", "ERROR"]
    assert rows[0][3] == "0.01" and rows[0][4] == "4" and rows[0][6:] == ["0.0025", "0.9975"]
    assert "Number of errored trials: 1" in out
    name, failures, error_file = rows[3]
    assert name == rows[2][0] and failures == "1"
    assert error_file.startswith(str(exp)) and "lr=1.0000" in error_file
    assert error_file.endswith("/error.txt") and os.path.isfile(error_file)


def test_show_reads_ray_experiments_and_ranks_with_the_given_mode(ray_storage):
    result = run_cli("show", str(ray_storage / "layout_grid"), "--mode", "min")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Current best trial: 2716e_00000 with loss=0.0067599999999999995 " in out  # raw, as Ray
    assert "parameters={'lr': 0.001}" in out
    assert "Number of trials: 3 (3 TERMINATED)" in out
    rows = table_rows(out, "train_fn_2716e_")
    assert [(r[0], r[1]) for r in rows] == [("train_fn_2716e_00000", "TERMINATED"),
                                            ("train_fn_2716e_00001", "TERMINATED"),
                                            ("train_fn_2716e_00002", "TERMINATED")]
    assert rows[0][3] == "0.001" and rows[0][-2:] == ["0.00676", "0.99324"]


def test_show_of_a_ray_experiment_says_why_there_is_no_best_trial(ray_storage):
    result = run_cli("show", str(ray_storage / "layout_grid"))
    assert result.exit_code == 0, result.output
    assert ("Current best trial: unknown (the experiment records metric 'loss' but not its "
            "mode; pass --mode min or --mode max)") in result.stdout


def test_show_lists_rays_errored_and_retried_trials_with_their_error_files(ray_storage):
    exp = ray_storage / "layout_fail"
    result = run_cli("show", str(exp), "--metric", "acc", "--mode", "max")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Current best trial: 2e4fb_00001 with acc=0.8" in out
    assert "Number of errored trials: 2" in out
    errors = {r[0]: r[1:] for r in table_rows(out, "failing_fn_") if len(r) == 3}
    assert errors["failing_fn_2e4fb_00000"][0] == "3"
    assert errors["failing_fn_2e4fb_00001"][0] == "1*"
    for _, error_file in errors.values():
        assert error_file.startswith(str(exp)) and os.path.isfile(error_file)
    assert "* The trial terminated successfully after retrying." in out


def test_show_finds_an_experiment_by_name_in_the_default_storage(ray_storage, monkeypatch,
                                                                 tmp_path):
    monkeypatch.setenv("TUNE_RESULT_DIR", str(ray_storage))
    monkeypatch.chdir(tmp_path)
    result = run_cli("show", "extras_class")
    assert result.exit_code == 0, result.output
    assert "MyTrainable_74d16_00000" in result.stdout


def test_show_of_a_missing_path_exits_2_listing_the_experiments_beside_it(ray_storage):
    result = run_cli("show", str(ray_storage / "layout_grd"))
    assert result.exit_code == 2
    assert f"No experiment at {ray_storage / 'layout_grd'}." in result.stderr
    assert (f"Experiments in {ray_storage}: extras_class, extras_meta, extras_tune_run, "
            "layout_fail, layout_grid.") in result.stderr
    assert "Did you mean 'layout_grid'?" in result.stderr


def test_show_of_a_storage_dir_exits_2_naming_its_experiments(ray_storage):
    result = run_cli("show", str(ray_storage))
    assert result.exit_code == 2
    assert "is a storage directory, not an experiment" in result.stderr
    assert "layout_grid" in result.stderr


def test_show_with_a_metric_no_trial_reported_exits_2_listing_the_reported(ray_storage):
    result = run_cli("show", str(ray_storage / "layout_grid"), "--metric", "accuracy")
    assert result.exit_code == 2
    assert "No trial of layout_grid reported the metric 'accuracy'." in result.stderr
    assert "Reported metrics: acc, loss, " in result.stderr
    assert "training_iteration" in result.stderr and "pid" not in result.stderr


def test_python_m_tunelib_cli_shows_a_ray_experiment(ray_storage):
    out = subprocess.run([sys.executable, "-m", "tunelib.cli", "show",
                          str(ray_storage / "extras_tune_run"), "--mode", "min"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Current best trial: 84783_00000 with loss=0.1" in out.stdout
    assert "plain_fn_84783_00001" in out.stdout
    assert "\x1b[" not in out.stdout  # not a terminal: no colours


# ------------------------------------------------------------------ plot


def plot_png(experiment: Path, out: Path, *args: str):
    """``tunelib plot EXPERIMENT --out OUT ARGS``; asserts it wrote a PNG image."""
    pytest.importorskip("matplotlib")
    result = run_cli("plot", str(experiment), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    return result


def test_plot_writes_the_learning_curves_of_a_tunelib_experiment(tunelib_storage, tmp_path):
    out = tmp_path / "curves.png"
    result = plot_png(tunelib_storage / "grid", out, "--metric", "loss")
    assert result.stdout == f"Wrote {out}: loss of 3 trials\n"
    assert result.stderr == ""  # the mode is the experiment's: the best is highlighted


def test_plot_writes_the_learning_curves_of_a_ray_experiment(ray_storage, tmp_path):
    result = plot_png(ray_storage / "layout_grid", tmp_path / "ray.png", "--metric", "acc",
                      "--mode", "max")
    assert result.stderr == ""


def test_plot_without_a_mode_warns_that_the_best_is_not_highlighted(ray_storage, tmp_path):
    result = plot_png(ray_storage / "layout_fail", tmp_path / "nomode.png", "--metric", "loss")
    assert "Best trial not highlighted" in result.stderr and "--mode" in result.stderr


def test_plot_of_a_metric_no_trial_reported_exits_2_listing_the_reported(tunelib_storage,
                                                                         tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("plot", str(tunelib_storage / "grid"), "--metric", "los",
                     "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    assert "No trial of grid reported the metric 'los'. Reported metrics: acc, loss," \
        in result.stderr
    assert "Did you mean 'loss'?" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_plot_of_a_missing_experiment_exits_2(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("plot", str(tmp_path / "nothing"), "--metric", "loss")
    assert result.exit_code == 2 and f"No experiment at {tmp_path / 'nothing'}" in result.stderr


def test_plot_without_matplotlib_names_the_plot_extra(tunelib_storage, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = run_cli("plot", str(tunelib_storage / "grid"), "--metric", "loss")
    assert result.exit_code == 1
    assert "needs matplotlib" in result.stderr and "pip install 'tunelib[plot]'" in result.stderr


# ------------------------------------------------------------------ ui


def test_ui_help_describes_the_command():
    result = run_cli("ui", "--help")
    assert result.exit_code == 0
    assert "Prefect UI" in result.stdout and "--port" in result.stdout


def test_ui_with_prefect_api_url_prints_that_servers_ui_and_starts_nothing(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4321/api")
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    result = run_cli("ui")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Prefect UI: http://127.0.0.1:4321\n"


def test_ui_refuses_a_port_when_prefect_api_url_names_the_server(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4321/api")
    result = run_cli("ui", "--port", "4555")
    assert result.exit_code == 2 and "PREFECT_API_URL is set" in result.stderr


def test_ui_refuses_a_port_in_use(monkeypatch):
    import socket

    monkeypatch.setattr(_ui, "configured_api_url", lambda: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("ui", "--port", str(port))
    assert result.exit_code == 2 and f"Port {port} on 127.0.0.1 is in use" in result.stderr


def test_ui_url_of_prefect_cloud_and_of_a_server():
    assert _ui.ui_url("http://10.0.0.5:4200/api") == "http://10.0.0.5:4200"
    assert (_ui.ui_url("https://api.prefect.cloud/api/accounts/a/workspaces/w")
            == "https://app.prefect.cloud/account/a/workspace/w")


def test_ui_runs_prefect_server_start_with_the_ui_on_the_port():
    command = _ui.server_command("127.0.0.1", 4567)
    assert command[:5] == [sys.executable, "-m", "prefect", "server", "start"]
    assert "--ui" in command and command[command.index("--port") + 1] == "4567"


# A stand-in for `prefect server start`: answers /api/health, records how it was started.
_FAKE_SERVER = '''
import http.server, json, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
with open(os.environ["FAKE_SERVER_RECORD"], "w") as f:
    json.dump({"pid": os.getpid(), "argv": sys.argv[1:],
               "api_port": os.environ.get("PREFECT_SERVER_API_PORT")}, f)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
'''

_UI_DRIVER = '''
import sys
from tunelib.cli import _ui
_ui.configured_api_url = lambda: None
_ui.server_command = lambda host, port: [sys.executable, {fake!r}, "--host", host,
                                         "--port", str(port)]
from tunelib.cli import main
sys.argv = ["tunelib", "ui"]
main()
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ui_prints_the_url_once_the_server_answers_and_stops_it_on_a_signal(tmp_path, sig):
    fake = tmp_path / "fake_server.py"
    fake.write_text(_FAKE_SERVER)
    record = tmp_path / "record.json"
    env = {**os.environ, "FAKE_SERVER_RECORD": str(record)}
    ui = subprocess.Popen([sys.executable, "-c", _UI_DRIVER.format(fake=str(fake))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in ui.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=60)
        started = json.loads(record.read_text())
        port = started["argv"][started["argv"].index("--port") + 1]
        assert line == f"Prefect UI: http://127.0.0.1:{port}\n"
        assert started["api_port"] == port  # the UI calls the API on this port, not 4200
        ui.send_signal(sig)
        ui.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(started["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(started["pid"]), "the server outlived `tunelib ui`"
        # Ctrl-C is how `tunelib ui` ends; a SIGTERM exits as killed by it (128 + 15)
        assert ui.returncode == (0 if sig == signal.SIGINT else 143)
        assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in ui.stderr.read()
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------ the table, as data


def _trial(trial_id, status, lr, **result):
    return Trial(trial_id=trial_id, config={"lr": lr}, trainable_name="f", status=status,
                 evaluated_params={"lr": lr}, dirname=f"f_{trial_id}",
                 last_result={"training_iteration": 1, "node_ip": "10.0.0.1", "pid": 7,
                              **result})


def test_status_table_orders_rows_live_first_and_infers_metric_columns():
    trials = [_trial("a_00000", TrialStatus.TERMINATED, 0.1, loss=0.5),
              _trial("a_00001", TrialStatus.RUNNING, 0.2, loss=0.4),
              _trial("a_00002", TrialStatus.PENDING, 0.3)]
    table = status_table(trials, metric="loss", mode="min")
    assert table.columns == ["Trial name", "status", "loc", "lr", "iter", "loss"]
    assert [r[0] for r in table.rows] == ["f_a_00001", "f_a_00002", "f_a_00000"]
    assert table.rows[0] == ["f_a_00001", "RUNNING", "10.0.0.1:7", 0.2, 1, 0.4]
    assert table.trials_line == "Number of trials: 3 (1 PENDING, 1 RUNNING, 1 TERMINATED)"
    assert str(table.best) == "Current best trial: a_00001 with loss=0.4 and parameters={'lr': 0.2}"


def test_status_table_lists_trials_with_error_files_under_the_experiment_dir():
    failed = _trial("a_00000", TrialStatus.ERROR, 0.1, loss=0.5)
    retried = _trial("a_00001", TrialStatus.TERMINATED, 0.2, loss=0.4)
    for trial, failures in ((failed, 3), (retried, 1)):
        trial.error_file, trial.num_failures = "error.txt", failures
    table = status_table([failed, retried], experiment_path="/r/exp")
    assert table.error_rows == [["f_a_00000", "3", "/r/exp/f_a_00000/error.txt"],
                                ["f_a_00001", "1*", "/r/exp/f_a_00001/error.txt"]]
    assert table.has_retried and table.best is None


def test_current_best_trial_skips_nan_and_missing_values():
    trials = [_trial("a", TrialStatus.TERMINATED, 1, loss=math.nan),
              _trial("b", TrialStatus.TERMINATED, 2),
              _trial("c", TrialStatus.TERMINATED, 3, loss=2.0),
              _trial("d", TrialStatus.TERMINATED, 4, loss=1.0)]
    assert current_best_trial(trials, "loss", "max").trial.trial_id == "c"
    assert current_best_trial(trials, "loss", "min").trial.trial_id == "d"
    assert current_best_trial(trials, "loss", None) is None


def test_format_cell_is_rays_tabulate_look():
    assert format_cell(0.0067599999999999995) == "0.00676"
    assert format_cell(None) == "" and format_cell(True) == "True" and format_cell(5) == "5"
    assert format_cell("x" * 30) == "..." + "x" * 17
