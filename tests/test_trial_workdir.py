"""Each trial runs in its own working directory, as in Ray (issue 13, item 3): the worker
changes into the trial's directory (``Trainable.logdir``), sets ``TUNE_ORIG_WORKING_DIR``,
goes back afterwards, and ``RAY_CHDIR_TO_TRIAL_DIR=0`` opts out; ``log_to_file`` copies
the trial's stdout/stderr into files there; ``export_formats`` calls ``_export_model``
when the trial ends.

Ray 2.60 is the reference throughout (checked side by side with it); one deliberate
difference: on local storage Ray 2.60 runs trials in a staging directory under
``/tmp/ray/session_*`` (``.../working_dirs/<trial>``), tunelib in the trial's directory on
storage, where Ray's documentation places ``log_to_file``'s files.
"""

import os
import sys
import warnings

import pytest

from tunelib import tune


@pytest.fixture(autouse=True)
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    monkeypatch.delenv("TUNE_ORIG_WORKING_DIR", raising=False)


@pytest.fixture
def driver_dir(tmp_path, monkeypatch):
    """The driver's working directory (not where results go)."""
    path = tmp_path / "driver"
    path.mkdir()
    monkeypatch.chdir(path)
    return str(path)


def _run_config(storage_dir, name, **kwargs):
    return tune.RunConfig(name=name, storage_path=storage_dir, verbose=0, **kwargs)


def writes_relative_file(config):
    with open("model.txt", "w") as f:
        f.write(str(config["x"]))
    tune.report({"cwd": os.getcwd(), "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")})


def test_concurrent_trials_write_relative_files_into_their_own_directories(storage_dir,
                                                                           driver_dir):
    """Ray: relative-path files of concurrent trials do not collide."""
    grid = tune.Tuner(
        writes_relative_file,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=_run_config(storage_dir, "rel"),
    ).fit()
    assert grid.num_errors == 0
    for result in grid:
        assert result.metrics["cwd"] == result.path
        assert result.metrics["orig"] == driver_dir
        with open(os.path.join(result.path, "model.txt")) as f:
            assert f.read() == str(result.config["x"])
    assert os.listdir(driver_dir) == []


class RecordsItsDirectory(tune.Trainable):
    def step(self):
        return {"cwd": os.getcwd(), "logdir": self.logdir, "done": True,
                "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")}


def test_a_class_trainable_runs_in_its_logdir_the_trial_directory(storage_dir, driver_dir):
    """Ray: ``Trainable.logdir`` is the trial's directory and the current directory."""
    grid = tune.Tuner(RecordsItsDirectory,
                      run_config=_run_config(storage_dir, "cls")).fit()
    metrics = grid[0].metrics
    assert metrics["logdir"] == metrics["cwd"] == grid[0].path
    assert metrics["orig"] == driver_dir


def test_RAY_CHDIR_TO_TRIAL_DIR_0_keeps_trials_in_the_driver_directory(storage_dir, driver_dir,
                                                                        monkeypatch):
    """Ray: ``RAY_CHDIR_TO_TRIAL_DIR=0`` opts out; ``logdir`` still names the trial dir."""
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    result = tune.Tuner(RecordsItsDirectory,
                        run_config=_run_config(storage_dir, "stay")).fit()[0]
    assert result.metrics["cwd"] == driver_dir
    assert result.metrics["logdir"] == result.path


def wanders_off(config):
    start = os.getcwd()
    os.chdir(config["elsewhere"])  # the trial moves on its own; the worker moves back
    tune.report({"start": start})


def test_a_reused_worker_starts_each_trial_where_it_started(storage_dir, driver_dir,
                                                            tmp_path, monkeypatch):
    """Workers run trial after trial: whatever directory a trial leaves, the next starts
    in the worker's own (Ray's actors are per trial, so nothing leaks there either)."""
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    grid = tune.Tuner(
        wanders_off,
        param_space={"elsewhere": str(tmp_path), "i": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=_run_config(storage_dir, "wander"),
    ).fit()
    assert [r.metrics["start"] for r in grid] == [driver_dir] * 3


def test_on_remote_storage_a_trial_runs_in_a_local_staging_directory(driver_dir):
    """Ray stages trial files locally (``.../working_dirs/<trial>``) when storage is
    remote; tunelib uses ``<tempdir>/tunelib-<uid>/working_dirs/<experiment>/<trial>``."""
    result = tune.Tuner(
        writes_relative_file, param_space={"x": 7},
        run_config=_run_config("memory://tunelib-workdir-test", "staged"),
    ).fit()[0]
    cwd = result.metrics["cwd"]
    assert cwd.endswith(os.path.join("working_dirs", "staged", os.path.basename(result.path)))
    with open(os.path.join(cwd, "model.txt")) as f:
        assert f.read() == "7"
    assert os.listdir(driver_dir) == []


def prints(config):
    print("python stdout")
    print("python stderr", file=sys.stderr)
    os.write(1, b"fd-level stdout\n")
    os.system("echo child process stdout; echo child process stderr >&2")
    tune.report({"done": True})


def _read(path):
    with open(path) as f:
        return f.read()


def _only_trial_dir(analysis):
    root = analysis.experiment_path
    (name,) = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    return os.path.join(root, name)


def test_log_to_file_true_writes_stdout_and_stderr_files_in_the_trial_dir(storage_dir,
                                                                          driver_dir, capfd):
    """Ray: ``log_to_file=True`` writes ``<trial dir>/stdout`` and ``<trial dir>/stderr``,
    and the output still reaches the console (tunelib also catches output below Python:
    fd writes, child processes)."""
    result = tune.Tuner(prints, run_config=_run_config(storage_dir, "logs",
                                                        log_to_file=True)).fit()[0]
    console = capfd.readouterr()
    assert "python stdout" in console.out and "child process stderr" in console.err
    out = _read(os.path.join(result.path, "stdout"))
    err = _read(os.path.join(result.path, "stderr"))
    for line in ("python stdout", "fd-level stdout", "child process stdout"):
        assert line in out
    assert "python stderr" in err and "child process stderr" in err
    assert "stderr" not in out and "stdout" not in err


def test_log_to_file_with_one_name_writes_both_streams_to_it(storage_dir, driver_dir):
    """Ray: a string sends both streams to that one file."""
    result = tune.Tuner(prints, run_config=_run_config(storage_dir, "one",
                                                        log_to_file="trial.log")).fit()[0]
    text = _read(os.path.join(result.path, "trial.log"))
    assert "python stdout" in text and "python stderr" in text
    assert not os.path.exists(os.path.join(result.path, "stdout"))


class PrintsEachStep(tune.Trainable):
    def setup(self, config):
        print("setup says hello")

    def step(self):
        print(f"step {self.iteration + 1}")
        print(f"warning {self.iteration + 1}", file=sys.stderr)
        return {"done": self.iteration + 1 == 2}


def test_tune_run_log_to_file_pair_names_the_stdout_and_stderr_files(storage_dir, driver_dir):
    """Ray: a (stdout, stderr) pair names each file; a class trainable's output from
    setup() on is in them."""
    analysis = tune.run(PrintsEachStep, storage_path=storage_dir, name="pair", verbose=0,
                        log_to_file=("out.log", "err.log"))
    path = _only_trial_dir(analysis)
    assert _read(os.path.join(path, "out.log")).splitlines() == [
        "setup says hello", "step 1", "step 2"]
    assert _read(os.path.join(path, "err.log")).splitlines() == ["warning 1", "warning 2"]


def test_log_to_file_is_honoured_so_it_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tune.RunConfig(log_to_file=True)
        tune.RunConfig(log_to_file=("out.log", "err.log"))


def test_a_bad_log_to_file_fails_before_any_trial_runs(storage_dir):
    tuner = tune.Tuner(prints, run_config=_run_config(storage_dir, "bad",
                                                       log_to_file=("a", "b", "c")))
    with pytest.raises(ValueError, match=r"`log_to_file` must be .* got \('a', 'b', 'c'\)"):
        tuner.fit()


class Exports(tune.Trainable):
    def step(self):
        return {"done": self.iteration + 1 == 3}

    def _export_model(self, export_formats, export_dir):
        path = os.path.join(export_dir, "exported.txt")
        with open(path, "w") as f:
            f.write(f"{export_formats} at iteration {self.iteration}")
        return {fmt: path for fmt in export_formats}


def test_tune_run_export_formats_exports_the_model_when_the_trial_ends(storage_dir,
                                                                      driver_dir):
    """Ray: ``export_formats`` calls ``Trainable.export_model`` (→ ``_export_model`` into
    ``logdir``) once the trial has ended."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # honoured: not "ignored"
        analysis = tune.run(Exports, storage_path=storage_dir, name="export", verbose=0,
                            export_formats=["model"])
    path = _only_trial_dir(analysis)
    assert _read(os.path.join(path, "exported.txt")) == "['model'] at iteration 3"


def test_export_formats_with_a_function_trainable_exports_nothing(storage_dir, driver_dir):
    """Ray: a function trainable has no model to export; the trial runs as usual."""
    analysis = tune.run(writes_relative_file, config={"x": 1}, storage_path=storage_dir,
                        name="fn_export", verbose=0, export_formats=["model"])
    assert analysis.trials[0].status == "TERMINATED"


def test_without_a_tee_program_output_still_goes_to_the_files(tmp_path):
    """The fallback of ``log_to_file`` where no ``tee`` is installed: the fds point at the
    files alone (in a child process: pytest owns this one's fds)."""
    import subprocess

    code = (
        "import os, shutil\n"
        "shutil.which = lambda name: None\n"
        "from tunelib.executor._trial_dir import output_to_files\n"
        f"with output_to_files({str(tmp_path)!r}, 'out', 'err'):\n"
        "    print('inside', flush=True)\n"
        "    os.system('echo child >&2')\n"
        "print('after')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path / "out") == "inside\n" and _read(tmp_path / "err") == "child\n"
    assert done.stdout == "after\n"
