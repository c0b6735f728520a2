"""Ray's progress reporters and ``verbose`` on the terminal.

What Ray 2.60 prints with its reporter engine (``RAY_AIR_NEW_OUTPUT=0``, the one
``progress_reporter`` works with) for ``examples/quickstart.py`` (4 trials of 15
iterations, 2 at a time), stdout lines including the script's own 8, next to tunelib's
(timing decides how many 5-second status blocks fit in; Ray's run took 17 s, tunelib's 9 s):

    verbose      0    1    2    3
    Ray 2.60     8   51   67  219
    tunelib      8   34   49  209

Both print, at 1: a status block every 5 s and at the end (time, scheduler, resources,
current best trial, number of trials by status, errored trials); at 2: also one line per
result (at most one per trial every 5 s, always the last) and the trial table at the end;
at 3: each result in full and the table in every block.
"""

from __future__ import annotations

import io
import re
import sys
import time
import warnings

import pyarrow.fs as pafs
import pytest
from _controller_fakes import run_controller

from tunelib import tune
from tunelib._callbacks import CallbackList, create_default_callbacks
from tunelib._reporters import ProgressLoop
from tunelib.schedulers import FIFOScheduler
from tunelib.trial import StorageContext, Trial
from tunelib.tune import CLIReporter, JupyterNotebookReporter, ProgressReporter

SYS_INFO = ("Using FIFO scheduling algorithm.", "Logical resource usage: 1.0/2 CPUs, 0/0 GPUs")


def trial(trial_id: str, status: str, loss=None, lr=0.1, **fields) -> Trial:
    t = Trial("train", trial_id=trial_id, config={"lr": lr}, evaluated_params={"lr": lr},
              status=status, dirname=f"train_{trial_id}",
              last_result={} if loss is None else {"loss": loss, "training_iteration": 3,
                                                   "config": {"lr": lr}}, **fields)
    t.set_storage(StorageContext(pafs.LocalFileSystem(), "/r/exp"))
    return t


def three_trials():
    return [trial("t0", "RUNNING", 0.5), trial("t1", "TERMINATED", 0.1, lr=0.01),
            trial("t2", "ERROR", 0.9, lr=1.0, error_file="error.txt", num_failures=2)]


def report(reporter, trials, done=False, capsys=None) -> str:
    reporter.setup(start_time=time.time(), total_samples=5)
    reporter.report(trials, done, *SYS_INFO)
    return capsys.readouterr().out


def header(out: str) -> list:
    """The columns of the last trial table in ``out``."""
    line = [line for line in out.splitlines()
            if line.startswith("| Trial name") and "| status" in line][-1]
    return [cell.strip() for cell in line.strip("|").split("|")]


# --------------------------------------------------------------------------- the block


def test_cli_reporter_prints_rays_status_block(capsys):
    out = report(CLIReporter(metric="loss", mode="min"), three_trials(), capsys=capsys)
    lines = out.splitlines()
    assert lines[0] == "== Status =="
    assert re.match(r"Current time: \S+ \S+ \(running for 00:00:\d\d\.\d\d\)$", lines[1])
    assert lines[2:4] == list(SYS_INFO)
    assert lines[4] == "Current best trial: t1 with loss=0.1 and parameters={'lr': 0.01}"
    assert lines[5] == "Result logdir: /r/exp"
    assert lines[6] == "Number of trials: 3/5 (1 ERROR, 1 RUNNING, 1 TERMINATED)"
    assert header(out) == ["Trial name", "status", "loc", "lr", "iter", "loss"]
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| train_")]
    assert rows[:3] == ["train_t0", "train_t1", "train_t2"]  # live first, as Ray
    assert "Number of errored trials: 1" in out
    assert "| train_t2   |          2 | /r/exp/train_t2/error.txt |" in out


def test_metric_and_parameter_columns_choose_the_columns(capsys):
    reporter = CLIReporter(metric_columns={"loss": "Loss"}, parameter_columns=["lr"])
    assert header(report(reporter, three_trials(), capsys=capsys)) == [
        "Trial name", "status", "loc", "lr", "Loss"]
    reporter = CLIReporter(metric_columns=["loss"], parameter_columns={"lr": "rate"})
    assert header(report(reporter, three_trials(), capsys=capsys)) == [
        "Trial name", "status", "loc", "rate", "loss"]


def test_add_metric_and_parameter_columns_as_ray(capsys):
    reporter = CLIReporter(metric_columns=["loss"], parameter_columns=["lr"])
    reporter.add_metric_column("training_iteration")
    with pytest.raises(ValueError, match="already exists"):
        reporter.add_metric_column("loss")
    with pytest.raises(ValueError, match="cannot differ"):
        reporter.add_parameter_column("momentum", "m")
    assert header(report(reporter, three_trials(), capsys=capsys))[-2:] == [
        "loss", "training_iteration"]


def test_infer_limit_caps_the_inferred_metric_columns(capsys):
    trials = [trial("t0", "RUNNING", 0.5)]
    trials[0].last_result.update(acc=0.9, f1=0.8)
    assert header(report(CLIReporter(infer_limit=1), trials, capsys=capsys)) == [
        "Trial name", "status", "loc", "lr", "iter", "loss"]


def test_max_progress_rows_keeps_each_status_a_share_until_done(capsys):
    trials = [trial(f"t{i}", "TERMINATED", 0.1 * i) for i in range(4)]
    trials += [trial("t9", "RUNNING", 0.5)]
    out = report(CLIReporter(max_progress_rows=2), trials, capsys=capsys)
    assert sum(line.startswith("| train_") for line in out.splitlines()) == 2
    assert "... 3 more trials not shown (3 TERMINATED)" in out
    out = report(CLIReporter(max_progress_rows=2), trials, done=True, capsys=capsys)
    assert sum(line.startswith("| train_") for line in out.splitlines()) == 5


def test_max_error_rows_truncates_the_error_table(capsys):
    trials = [trial(f"t{i}", "ERROR", 0.1, error_file="error.txt", num_failures=1)
              for i in range(3)]
    out = report(CLIReporter(max_error_rows=1), trials, capsys=capsys)
    assert "Number of errored trials: 3" in out
    assert "Table truncated to 1 rows (2 overflow)" in out


def test_max_column_length_cuts_long_values(capsys):
    trials = [trial("t0", "RUNNING", 0.5, lr="a-very-long-learning-rate-name")]
    out = report(CLIReporter(max_column_length=10), trials, capsys=capsys)
    assert "...te-name" in out and "a-very-long" not in out


def test_sort_by_metric_orders_finished_trials_by_it(capsys):
    trials = [trial("t0", "TERMINATED", 0.9), trial("t1", "TERMINATED", 0.1),
              trial("t2", "TERMINATED", 0.5)]
    out = report(CLIReporter(metric="loss", mode="min", sort_by_metric=True), trials,
                 capsys=capsys)
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| train_")]
    assert rows == ["train_t1", "train_t2", "train_t0"]


def test_max_report_frequency_limits_reports_but_not_the_last():
    reporter = CLIReporter(max_report_frequency=60)
    assert reporter.should_report([]) is True
    assert reporter.should_report([]) is False
    assert reporter.should_report([], done=True) is True


def test_a_reporter_metric_and_tune_config_metric_conflict_as_in_ray():
    with pytest.raises(ValueError, match="already instantiated with their own `metric`"):
        CLIReporter(metric="loss").setup(metric="acc", mode="max")


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="`metric_columns`"):
        CLIReporter(metric_columns="loss")
    with pytest.raises(ValueError, match="`max_progress_rows`"):
        CLIReporter(max_progress_rows=0)
    with pytest.raises(TypeError, match="`progress_reporter` must be a tune.ProgressReporter"):
        create_default_callbacks([], progress_reporter=object())


# --------------------------------------------------------------------------- the loop


class Counting(ProgressReporter):
    """A user's reporter: reports each time a trial finished, and at the end."""

    def __init__(self):
        self.asked, self.reports, self.finished = 0, [], 0

    def should_report(self, trials, done=False):
        self.asked += 1
        finished = sum(t.status == "TERMINATED" for t in trials)
        new, self.finished = finished > self.finished, finished
        return new or done

    def report(self, trials, done, *sys_info):
        self.reports.append((len(trials), done, sys_info))


def test_a_progress_reporter_subclass_is_asked_each_step_and_reports(tmp_path):
    reporter = Counting()
    callbacks = CallbackList([], progress=ProgressLoop(
        reporter, verbose=1, sys_info=lambda trials: ["sched"]))
    run_controller({"a": [{"loss": 1.0}], "b": [{"loss": 0.5}] * 3}, tmp_path,
                   callbacks=callbacks, capacity=1)
    assert reporter.asked > len(reporter.reports) >= 2
    assert reporter.reports[-1] == (2, True, ("sched",))
    assert all(not done for _, done, _ in reporter.reports[:-1])


def run_quietly_at(verbose, tmp_path, monkeypatch, capsys) -> str:
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    callbacks = create_default_callbacks([], verbose=verbose, metric="loss", mode="min",
                                         scheduler=FIFOScheduler(), total_resources=(2, 0))
    run_controller({"a": [{"loss": 1.0}, {"loss": 0.5}], "b": [{"loss": 0.7}]}, tmp_path,
                   callbacks=callbacks, metric="loss", mode="min")
    return capsys.readouterr().out


def test_verbose_0_prints_nothing(tmp_path, monkeypatch, capsys):
    assert run_quietly_at(0, tmp_path, monkeypatch, capsys) == ""


def test_verbose_1_prints_status_blocks_without_results_or_table(tmp_path, monkeypatch,
                                                                   capsys):
    out = run_quietly_at(1, tmp_path, monkeypatch, capsys)
    assert out.count("== Status ==") == 2  # the first step, and the end
    assert "Number of trials: 2/2 (2 TERMINATED)" in out
    assert "Current best trial:" in out and "Using FIFO scheduling algorithm." in out
    assert "| Trial name" not in out and "reported" not in out and "Result for" not in out


def test_verbose_2_adds_a_line_per_result_and_the_final_table(tmp_path, monkeypatch, capsys):
    out = run_quietly_at(2, tmp_path, monkeypatch, capsys)
    assert re.search(r"Trial fake_\w+ reported loss=1.00 with parameters=\{'name': 'a'\}\.\n",
                     out)
    assert re.search(r"reported loss=0.50 with parameters=\{'name': 'a'\}\. "
                     r"This trial completed\.", out)
    assert out.count("| Trial name") == 1 and "Result for" not in out


def test_verbose_3_adds_full_results_and_tables_in_every_block(tmp_path, monkeypatch, capsys):
    out = run_quietly_at(3, tmp_path, monkeypatch, capsys)
    assert re.search(r"Result for fake_\w+:\n(  .*\n)*  loss: 1.0\n", out)
    assert out.count("| Trial name") == out.count("== Status ==") == 2


# --------------------------------------------------------------------------- rendering


def test_plain_text_when_stdout_is_not_a_terminal(capsys):
    out = report(CLIReporter(), three_trials(), capsys=capsys)
    assert "\x1b[" not in out
    assert re.search(r"^\+-+\+", out, re.M) and re.search(r"^\|-+\+", out, re.M)  # psql


def test_styled_boxes_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    reporter = CLIReporter()
    reporter.setup(start_time=time.time())
    reporter.report(three_trials(), False)
    assert "╭" in terminal.getvalue() and "== Status ==" in terminal.getvalue()


def test_jupyter_reporter_warns_outside_a_notebook_and_renders_html():
    with pytest.warns(UserWarning, match="not IPython/Jupyter-compatible"):
        reporter = JupyterNotebookReporter(overwrite=False, metric="loss", mode="min")
    html = reporter._progress_html(three_trials(), True)
    assert html.startswith("<pre>") and "Current best trial: t1" in html


def test_the_default_reporter_is_jupyters_in_a_notebook_kernel_only(monkeypatch):
    """Ray's choice: a notebook kernel (IPython imported, its shell a
    ZMQInteractiveShell) gets the JupyterNotebookReporter; a script gets the CLIReporter
    without IPython being imported to find out."""
    import types

    from tunelib._reporters import detect_reporter

    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert type(detect_reporter()) is CLIReporter
    assert "IPython" not in sys.modules

    class ZMQInteractiveShell:
        pass

    shells = [ZMQInteractiveShell(), object(), None]
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shells[0]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    reporter = detect_reporter(verbose=1)
    assert type(reporter) is JupyterNotebookReporter and reporter._overwrite
    for shell in shells[1:]:   # a terminal IPython, or IPython imported as a library
        fake.get_ipython = lambda shell=shell: shell
        assert type(detect_reporter()) is CLIReporter



# --------------------------------------------------------------------------- end to end


def _train(config):
    for i in range(2):
        tune.report({"loss": config["lr"] / (i + 1)})


def test_run_config_progress_reporter_is_honoured(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    reporter = CLIReporter(parameter_columns={"lr": "LR"}, metric_columns={"loss": "LOSS"},
                           print_intermediate_tables=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "ignored" warning any more
        run_config = tune.RunConfig(name="rep", storage_path=str(tmp_path), verbose=1,
                                    progress_reporter=reporter)
    tune.Tuner(_train, param_space={"lr": tune.grid_search([0.1, 0.2])},
               tune_config=tune.TuneConfig(metric="loss", mode="min"),
               run_config=run_config).fit()
    out = capsys.readouterr().out
    assert header(out) == ["Trial name", "status", "loc", "LR", "LOSS"]
    assert "Number of trials: 2/2 (2 TERMINATED)" in out
