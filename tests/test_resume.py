"""A driver killed mid-experiment loses nothing: Tuner.restore(path, trainable).fit() and
tune.run(resume=True) continue unfinished trials from their checkpoints, keep finished
ones, and continue the search instead of repeating it."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from tunelib import tune

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

HERE = os.path.dirname(os.path.abspath(__file__))


def counting(config):
    """10 steps of `sleep` seconds, a checkpoint at every step; resumes from it."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                start = json.load(f)["step"]
    for step in range(start, 10):
        time.sleep(config["sleep"])
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"step": step + 1}, f)
            tune.report({"score": config["x"] * (step + 1), "step": step + 1},
                        checkpoint=tune.Checkpoint.from_directory(d))


DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from test_resume import counting
    from tunelib import tune
    tune.Tuner(
        counting,
        param_space={{"x": tune.grid_search([1, 2, 3, 4, 5, 6]), "sleep": 0.25}},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(name="crashy", storage_path=sys.argv[1], verbose=0),
    ).fit()
""")


def _rows(exp_dir):
    total = 0
    for name in os.listdir(exp_dir):
        path = os.path.join(exp_dir, name, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                total += sum(1 for _ in f)
    return total


def _run_and_kill(storage_dir, after_rows):
    """Start an experiment in a driver process and SIGKILL it (and its workers) midway."""
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER.format(here=HERE), storage_dir],
                            env=env, start_new_session=True)
    exp_dir = os.path.join(storage_dir, "crashy")
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.isdir(exp_dir) and _rows(exp_dir) >= after_rows:
            break
        assert proc.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.05)
    _read_every_trial(exp_dir)  # while the experiment is still running
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _read_every_trial(exp_dir)  # after its driver was killed
    return exp_dir


def _read_every_trial(exp_dir):
    """Result.from_path reads any trial dir, whatever state its experiment is in."""
    from tunelib.result import Result

    for name in os.listdir(exp_dir):
        path = os.path.join(exp_dir, name)
        if not os.path.exists(os.path.join(path, "result.json")):
            continue
        result = Result.from_path(path)
        rows = len(result.metrics_dataframe)
        assert rows >= 1 and result.metrics["step"] == result.metrics_dataframe["step"].iloc[-1]
        assert result.config["sleep"] == 0.25


def _check_completed(grid, killed_rows):
    assert len(grid) == 6 and grid.num_errors == 0
    assert sorted(r.config["x"] for r in grid) == [1, 2, 3, 4, 5, 6]  # no config repeated
    for result in grid:
        df = result.metrics_dataframe
        assert result.metrics["step"] == 10
        assert df["training_iteration"].iloc[-1] == 10
        assert list(df["step"]) == list(df["training_iteration"])  # resumed, not restarted
    assert sum(len(r.metrics_dataframe) for r in grid) < 60 + killed_rows


def test_tuner_restore_continues_a_killed_experiment(storage_dir):
    exp_dir = _run_and_kill(storage_dir, after_rows=12)
    killed_rows = _rows(exp_dir)
    assert killed_rows < 60
    grid = tune.Tuner.restore(exp_dir, trainable=counting).fit()
    _check_completed(grid, killed_rows)


def test_tune_run_resume(storage_dir):
    exp_dir = _run_and_kill(storage_dir, after_rows=8)
    killed_rows = _rows(exp_dir)
    analysis = tune.run(counting, name="crashy", storage_path=storage_dir, resume=True,
                        config={"x": tune.grid_search([1, 2, 3, 4, 5, 6]), "sleep": 0.25},
                        metric="score", mode="max", verbose=0)
    assert len(analysis.trials) == 6
    assert analysis.best_config["x"] == 6
    frames = analysis.trial_dataframes.values()
    assert all(df["step"].iloc[-1] == 10 for df in frames)
    assert sum(len(df) for df in frames) < 60 + killed_rows  # finished work is not redone


def test_resume_auto_starts_afresh_when_nothing_to_resume(storage_dir):
    analysis = tune.run(counting, name="fresh", storage_path=storage_dir, resume="AUTO",
                        config={"x": 1, "sleep": 0.0}, verbose=0)
    assert analysis.trials[0].last_result["step"] == 10
    with pytest.raises(ValueError, match="`resume` must be"):
        tune.run(counting, name="fresh", storage_path=storage_dir, resume="SOMETIMES")
