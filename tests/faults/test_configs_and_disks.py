"""Nothing lost, nothing wrong (issue 14): configs that are not plain JSON, a full disk, and
corrupt result lines.

Ray 2.60 is the reference where it gets things right, and each test says what Ray does:
Ray gives a trial and ``fit()``'s results the config objects (cloudpickled), but its
``Tuner.restore`` turns a tuple into a list and its ``Result.from_path`` reads the JSON
view; Ray's ``Result.from_path`` raises ``JSONDecodeError`` on a corrupt line in the
middle of result.json, while its ``ExperimentAnalysis`` and ``get_results()`` silently
drop that trial's whole history; an unpicklable config value raises pickle's
``TypeError: cannot pickle '_thread.lock' object``, naming no key. On a full disk (a 1 MB
tmpfs) Ray's ``fit()`` returns without an error while result.json ends in a half line,
the experiment state is cut off mid-JSON and its ExperimentAnalysis drops the trial's
metrics; its loggers append to result.json/progress.csv (``open("at")``) after whatever is
there. tunelib goes further where it says so.
"""

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from _helpers_configs import (
    HERE,
    assert_same_config,
    describe,
    expected_config,
    filling_the_disk,
    json_lines,
    leftovers,
    non_json_space,
    seeing,
    tiny_tmpfs,
)

from tunelib import tune
from tunelib._trial_writer import LocalBackend, StorageWriteError, TrialWriter
from tunelib.analysis import ExperimentAnalysis
from tunelib.result import Result

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ray-2.60"


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def _run_config(storage, name, **kwargs):
    return tune.RunConfig(name=name, storage_path=str(storage), verbose=0, **kwargs)


# ------------------------------------------------------------------ non-JSON configs
@pytest.mark.slow
def test_non_json_configs_reach_the_trial_and_the_results_as_the_same_objects(storage_dir):
    # As Ray: the trial and fit()'s results hold the objects; params.json is Ray's view
    grid = tune.Tuner(
        seeing, param_space=non_json_space((1, 2)),
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=_run_config(storage_dir, "objects"),
    ).fit()
    assert grid.num_errors == 0
    for result in grid:
        expected = expected_config(int(result.config["n"]))
        assert result.metrics["seen"] == describe(expected)  # what the trainable was given
        assert_same_config(result.config, expected)
    best = grid.get_best_result()
    assert_same_config(best.config, expected_config(2))
    analysis = ExperimentAnalysis(os.path.join(storage_dir, "objects"),
                                  default_metric="score", default_mode="max")
    assert_same_config(analysis.best_config, expected_config(2))
    with open(os.path.join(best.path, "params.json")) as f:
        assert json.load(f) == {"fn": "<ufunc 'tanh'>", "n": 2, "p": "Point(a=1, b=2)",
                                "t": [1, 2]}


@pytest.mark.slow
def test_a_lambda_in_the_config_reaches_the_trial_and_the_result(storage_dir):
    # As Ray (which cloudpickles configs); today: a raw PicklingError at trial start
    def use(config):
        tune.report({"y": config["act"](1)})

    grid = tune.Tuner(use, param_space={"act": lambda x: x + 1},
                      run_config=_run_config(storage_dir, "lambda")).fit()
    assert grid.num_errors == 0
    assert grid[0].metrics["y"] == 2 and grid[0].config["act"](2) == 3


@pytest.mark.slow
@pytest.mark.parametrize("make, type_name", [
    (lambda tmp: threading.Lock(), "_thread.lock"),
    (lambda tmp: open(tmp / "log.txt", "w"), "_io.TextIOWrapper"),  # noqa: SIM115
], ids=["lock", "open-file"])
def test_an_unpicklable_config_value_is_named_before_any_trial_starts(storage_dir, tmp_path,
                                                                      make, type_name):
    # Ray raises pickle's TypeError, naming no key; tunelib names the key path and the type
    value = make(tmp_path)
    with pytest.raises(TypeError, match=re.escape(f"param_space['opt']['handle'] holds a "
                                                  f"{type_name}")):
        tune.Tuner(seeing, param_space={"opt": {"handle": value}},
                   run_config=_run_config(storage_dir, "unpicklable")).fit()
    assert not glob.glob(os.path.join(storage_dir, "unpicklable", "seeing_*"))  # no trial ran


# ------------------------------------------------------------------ kill -9, then resume
KILLED_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from _helpers_configs import non_json_space, seeing
    from tunelib import tune
    space = dict(non_json_space(), sleep=0.2, steps=4)
    tune.Tuner(
        seeing, param_space=space,
        tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(name="killed", storage_path=sys.argv[1], verbose=0),
    ).fit()
""")


def _expected_after_kill(n):
    return dict(expected_config(n), sleep=0.2, steps=4)


@pytest.fixture(scope="module")
def _killed_once(tmp_path_factory):
    """An experiment whose driver was killed (SIGKILL, workers too) once two results were
    on storage: two trials ran, two never started."""
    storage_dir = str(tmp_path_factory.mktemp("killed"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER.format(here=HERE), storage_dir],
                            env=dict(os.environ, TUNELIB_DISABLE_PREFECT="1"),
                            start_new_session=True)
    exp_dir = os.path.join(storage_dir, "killed")
    deadline = time.time() + 120
    try:
        while sum(len(json_lines(p)) for p in glob.glob(f"{exp_dir}/*/result.json")) < 2:
            assert proc.poll() is None, "the driver ended before it could be killed"
            assert time.time() < deadline, "no results within 120 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return exp_dir


@pytest.fixture
def killed_experiment(_killed_once, tmp_path):
    """A copy of the killed experiment, for one test to resume or read."""
    return shutil.copytree(_killed_once, str(tmp_path / "killed"))


@pytest.mark.slow
def test_a_killed_experiment_resumes_with_the_config_objects(killed_experiment):
    # Ray's Tuner.restore reads the tuple back as a list; tunelib gives back every object,
    # to the resumed trials too. Two of the four had not started when the driver was killed.
    started = glob.glob(f"{killed_experiment}/*/result.json")
    assert 0 < len(started) < 4
    # a writer killed in the middle of a line (the driver's kill took it down with it)
    with open(started[0], "a") as f:
        f.write('{"score": 0.5, "se')
    with open(os.path.join(os.path.dirname(started[0]), "progress.csv"), "a") as f:
        f.write("0.5,fn=ufunc")

    grid = tune.Tuner.restore(killed_experiment, seeing).fit()

    assert len(grid) == 4 and grid.num_errors == 0
    for result in grid:
        expected = _expected_after_kill(int(result.config["n"]))
        assert result.metrics["seen"] == describe(expected)  # after the resume too
        assert_same_config(result.config, expected)
        assert json_lines(os.path.join(result.path, "result.json"))[-1]["step"] == 4
        assert pd.read_csv(os.path.join(result.path, "progress.csv"))["step"].iloc[-1] == 4
    assert_same_config(grid.get_best_result("score", "max").config, _expected_after_kill(4))


@pytest.mark.slow
def test_the_results_of_a_killed_experiment_hold_the_config_objects(killed_experiment):
    # Ray reads a killed experiment's configs back from its pickled trials, the tuple as a
    # list; here the results of the trials that ran are newer than the saved state
    grid = tune.Tuner.restore(killed_experiment, seeing).get_results()
    reported = [r for r in grid if r.metrics]
    assert reported
    for result in reported:
        assert_same_config(result.config, _expected_after_kill(int(result.config["n"])))


# ------------------------------------------------------------------ a full disk
def test_an_append_that_fills_the_disk_is_taken_back_and_names_the_file(tmp_path):
    with tiny_tmpfs(str(tmp_path / "disk"), "64k") as disk:
        writer = TrialWriter(LocalBackend(os.path.join(disk, "trial")))
        with pytest.raises(StorageWriteError) as failed:
            for i in range(1000):
                writer.append_result({"i": i, "pad": "x" * 1500})
        writer.close()
        assert failed.value.errno == errno.ENOSPC
        assert "trial/result.json: No space left on device" in str(failed.value) or \
            "trial/progress.csv: No space left on device" in str(failed.value)
        rows = json_lines(os.path.join(disk, "trial", "result.json"))  # no half line
        assert [r["i"] for r in rows] == list(range(len(rows)))
        assert len(pd.read_csv(os.path.join(disk, "trial", "progress.csv"))) in (len(rows),
                                                                                 len(rows) - 1)


@pytest.mark.slow
def test_a_full_disk_fails_the_trial_and_a_resume_after_freeing_space_finishes_it(storage_dir):
    # Ray: no error, a half line at the end of result.json, the trial's metrics dropped by
    # its readers. tunelib fails the trial, takes the half line back, and resumes it.
    # Only the trial dir is the tiny disk: the driver's experiment state has room.
    with tiny_tmpfs(os.path.join(storage_dir, "full", "trial0"), "1m") as trial_dir:
        tuner = tune.Tuner(
            filling_the_disk,
            tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "trial0"),
            run_config=_run_config(storage_dir, "full"),
        )
        grid = tuner.fit()
        assert grid.num_errors == 1
        failed_rows = json_lines(os.path.join(trial_dir, "result.json"))  # every line whole
        assert 3 <= len(failed_rows) < 30 and leftovers(trial_dir) == []

        os.remove(os.path.join(trial_dir, "filler.bin"))  # space is freed
        grid = tune.Tuner.restore(os.path.join(storage_dir, "full"), filling_the_disk,
                                  resume_errored=True).fit()

        assert grid.num_errors == 0
        rows = json_lines(os.path.join(trial_dir, "result.json"))
        assert rows[-1]["step"] == 30 and rows[-1]["training_iteration"] == 30
        assert [r["step"] for r in rows[len(failed_rows):]] == list(range(4, 31))
        assert grid[0].metrics_dataframe["step"].iloc[-1] == 30
        assert Result.from_path(trial_dir).metrics["step"] == 30


@pytest.mark.slow
def test_a_full_disk_error_names_the_file_and_the_cause(storage_dir):
    # Ray: no error at all (its loggers swallow it); tunelib names the file and the cause
    with tiny_tmpfs(os.path.join(storage_dir, "full", "trial0"), "1m") as trial_dir:
        grid = tune.Tuner(
            filling_the_disk,
            tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "trial0"),
            run_config=_run_config(storage_dir, "full"),
        ).fit()
        (error,) = grid.errors
        assert f"Could not write {trial_dir}/" in str(error)
        assert "No space left on device" in str(error)


@pytest.mark.slow
def test_a_full_storage_fails_fit_with_a_clear_error_and_resumes_after_freeing_space(
        storage_dir, tmp_path):
    # Ray logs the failed save, returns from fit() and leaves the state file cut off mid-JSON
    with tiny_tmpfs(str(tmp_path / "disk"), "1m") as disk:
        tuner = tune.Tuner(
            filling_the_disk,
            tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "trial0"),
            run_config=_run_config(disk, "full"),
        )
        with pytest.raises(tune.TuneError, match=r"experiment_state-.*No space left on device"):
            tuner.fit()
        os.remove(os.path.join(disk, "full", "trial0", "filler.bin"))  # space is freed
        grid = tune.Tuner.restore(os.path.join(disk, "full"), filling_the_disk,
                                  resume_errored=True).fit()
        assert grid.num_errors == 0 and grid[0].metrics["step"] == 30


# ------------------------------------------------------------------ corrupt result lines
@pytest.fixture
def ray_grid(tmp_path):
    """A copy of an experiment Ray 2.60 wrote (3 trials, 5 results each)."""
    dest = tmp_path / "layout_grid"
    shutil.copytree(FIXTURES / "layout_grid", dest)
    for root, dirs, files in os.walk(dest):  # fixtures are read-only
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(dest, 0o755)
    return str(dest)


def _corrupt_line_2(trial_dir):
    path = os.path.join(trial_dir, "result.json")
    with open(path) as f:
        lines = f.readlines()
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def test_a_corrupt_line_in_result_json_is_skipped_by_every_reader(ray_grid, caplog):
    # Ray: Result.from_path raises JSONDecodeError naming no file; ExperimentAnalysis and
    # get_results() drop the trial's whole history. tunelib skips the one line, and says so.
    trial_dir = glob.glob(os.path.join(ray_grid, "train_fn_2716e_00000*"))[0]
    path = _corrupt_line_2(trial_dir)

    caplog.set_level("WARNING", logger="tunelib._reader")
    result = Result.from_path(trial_dir)
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 3, 4, 5]
    assert result.metrics["training_iteration"] == 5
    (warning,) = caplog.records
    assert f"line 2 of {path}" in warning.getMessage()

    analysis = ExperimentAnalysis(ray_grid, default_metric="loss", default_mode="min")
    assert len(analysis.trial_dataframes["2716e_00000"]) == 4
    grid = tune.Tuner.restore(ray_grid, lambda config: None).get_results()
    assert sorted(len(r.metrics_dataframe) for r in grid) == [4, 5, 5]


def test_a_resume_cuts_the_files_of_the_trials_it_runs_again_back_to_whole_lines(ray_grid):
    # Ray's loggers open the files with "at" and append after whatever a killed writer left
    from tunelib import storage
    from tunelib.resume import RESUME, ResumePolicy, load_trials

    dirs = sorted(glob.glob(os.path.join(ray_grid, "train_fn_2716e_0000*")))
    for trial_dir in dirs:
        for name, half in (("result.json", '{"loss": 0.1, "tra'), ("progress.csv", "0.1,")):
            with open(os.path.join(trial_dir, name), "a") as f:
                f.write(half)
    fs, path = storage.get_fs_and_path(ray_grid)
    load_trials(fs, path, ResumePolicy(finished=RESUME))

    for trial_dir in dirs:
        assert len(json_lines(os.path.join(trial_dir, "result.json"))) == 5
        with open(os.path.join(trial_dir, "progress.csv"), "rb") as f:
            assert f.read().endswith(b"\n")
