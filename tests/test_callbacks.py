"""Ray's ``tune.Callback`` hooks: which are called, how often, in which order, with which
arguments, and what a callback that raises does, as measured on Ray 2.60.

Most tests run the controller against scripted trials (``_controller_fakes``, no worker
processes); one runs ``Tuner.fit()`` end to end.

Ray 2.60's counts on 4 trials (``max_failures=1``) of which 2 fail once and recover and 2
fail for good, each reporting with a checkpoint (measured with Ray 2.60 on the trainable
of the last test, grid of 4): setup 1, on_trial_start 8, on_trial_result 10,
on_checkpoint 10, on_trial_save 10, on_trial_recover 4, on_trial_error 2,
on_trial_complete 2, on_experiment_end 1, on_trial_restore 0.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
from typing import Dict, List

import pytest
from _controller_fakes import checkpointed, run_controller, trial_named

from tunelib import tune
from tunelib.checkpoint import Checkpoint
from tunelib.error import TuneError
from tunelib.tune import Callback

HOOKS = ["setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore",
         "on_trial_save", "on_trial_result", "on_checkpoint", "on_trial_recover",
         "on_trial_error", "on_trial_complete", "on_experiment_end"]
STEP_HOOKS = {"on_step_begin", "on_step_end"}


class Recorder(Callback):
    """Keeps every hook call: its name, its arguments, and the trial's config name."""

    def __init__(self, raise_in: str = ""):
        self.calls: List[tuple] = []
        self.raise_in = raise_in

    def __getattribute__(self, name):
        if name in HOOKS:
            def hook(*args, **info):
                assert not args, f"{name} got positional arguments {args}"
                trial = info.get("trial")
                self.calls.append((name, trial.config.get("name") if trial else None, info))
                if name == self.raise_in:
                    raise ValueError(f"boom in {name}")
            return hook
        return super().__getattribute__(name)

    def counts(self) -> Dict[str, int]:
        return dict(collections.Counter(name for name, _, _ in self.calls
                                        if name not in STEP_HOOKS))

    def order(self, trial_name: str) -> List[str]:
        return [name for name, trial, _ in self.calls if trial == trial_name]

    def args_of(self, hook: str) -> dict:
        return next(info for name, _, info in self.calls if name == hook)


def four_trials():
    """Two trials fail once and recover, two fail for good (max_failures=1)."""
    recovering = [checkpointed(score=1.0), RuntimeError("first attempt"),
                  checkpointed(score=2.0), checkpointed(score=3.0)]
    failing = [checkpointed(score=1.0), RuntimeError("first attempt"),
               checkpointed(score=2.0), RuntimeError("for good")]
    return {"r0": recovering, "r1": list(recovering), "f2": failing, "f3": list(failing)}


def test_hook_counts_are_rays_on_trials_that_recover_and_fail(tmp_path):
    callback = Recorder()
    run_controller(four_trials(), tmp_path, max_failures=1, callbacks=[callback], capacity=2)
    assert callback.counts() == {
        "setup": 1, "on_trial_start": 8, "on_trial_result": 10, "on_checkpoint": 10,
        "on_trial_save": 10, "on_trial_recover": 4, "on_trial_error": 2,
        "on_trial_complete": 2, "on_experiment_end": 1,
    }


def test_hooks_of_one_trial_come_in_rays_order(tmp_path):
    callback = Recorder()
    run_controller(four_trials(), tmp_path, max_failures=1, callbacks=[callback], capacity=2)
    attempt = ["on_trial_start", "on_trial_result", "on_checkpoint", "on_trial_save"]
    saved = ["on_trial_result", "on_checkpoint", "on_trial_save"]
    assert callback.order("r0") == attempt + ["on_trial_recover"] + attempt + saved + [
        "on_trial_complete"]
    assert callback.order("f2") == attempt + ["on_trial_recover"] + attempt + [
        "on_trial_error"]


def test_hooks_receive_rays_arguments(tmp_path):
    callback = Recorder()
    controller, _, _ = run_controller({"a": [checkpointed(loss=0.5)]}, tmp_path,
                                      callbacks=[callback], stopper={"loss": 10})
    setup = callback.args_of("setup")
    assert setup == {"stop": {}, "num_samples": 1, "total_num_samples": 1,
                     "time_budget_s": None}
    result = callback.args_of("on_trial_result")
    assert set(result) == {"iteration", "trials", "trial", "result"}
    assert result["trials"] is controller.trials and isinstance(result["iteration"], int)
    assert result["result"]["loss"] == 0.5 and result["result"]["training_iteration"] == 1
    checkpoint = callback.args_of("on_checkpoint")["checkpoint"]
    trial = trial_named(controller, "a")
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.path == os.path.join(trial.path, "checkpoint_000000")
    assert trial.checkpoint.path == checkpoint.path
    assert set(callback.args_of("on_experiment_end")) == {"trials"}


def test_setup_gets_the_stop_dict_as_ray_passes_it():
    """Ray passes ``stop`` when it is a dict, else ``{}`` (a Stopper is not passed)."""
    from tunelib._callbacks import CallbackList

    callback = Recorder()
    CallbackList([callback], stop={"training_iteration": 2}).setup(num_samples=1)
    CallbackList([callback], stop=tune.stopper.MaximumIterationStopper(2)).setup(num_samples=1)
    assert [info["stop"] for _, _, info in callback.calls] == [{"training_iteration": 2}, {}]


def test_iteration_counts_the_steps_of_the_experiment_loop(tmp_path):
    callback = Recorder()
    run_controller({"a": [{"loss": 1.0}] * 3}, tmp_path, callbacks=[callback])
    ends = [info["iteration"] for name, _, info in callback.calls if name == "on_step_end"]
    begins = [info["iteration"] for name, _, info in callback.calls if name == "on_step_begin"]
    assert ends == list(range(1, len(ends) + 1))
    assert begins[:len(ends)] == list(range(len(ends)))


def test_the_result_that_stops_a_trial_is_done(tmp_path):
    callback = Recorder()
    run_controller({"a": [{"loss": 1.0}] * 5}, tmp_path, callbacks=[callback],
                   stopper={"training_iteration": 2})
    done = [info["result"].get("done", False) for name, _, info in callback.calls
            if name == "on_trial_result"]
    assert done == [False, True]


def test_a_callback_without_some_hooks_is_called_for_the_ones_it_has(tmp_path):
    class OnlyResults:
        def __init__(self):
            self.results = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results += 1

    callback = OnlyResults()
    run_controller({"a": [{"loss": 1.0}] * 2}, tmp_path, callbacks=[callback])
    assert callback.results == 2


def test_a_setup_with_an_old_signature_is_called_without_arguments(tmp_path):
    class OldSetup(Callback):
        called = 0

        def setup(self):
            OldSetup.called += 1

    with pytest.warns(FutureWarning, match="Please update `setup`"):
        run_controller({"a": [{"loss": 1.0}]}, tmp_path, callbacks=[OldSetup()])
    assert OldSetup.called == 1


# --------------------------------------------------------------------------- raising


def test_a_raising_on_trial_result_fails_the_experiment_with_a_tune_error(tmp_path):
    """Ray: ``TuneError`` whose message is the traceback; on_experiment_end still runs."""
    callback = Recorder(raise_in="on_trial_result")
    with pytest.raises(TuneError, match="boom in on_trial_result") as info:
        run_controller({"a": [{"loss": 1.0}] * 3}, tmp_path, callbacks=[callback])
    assert isinstance(info.value.__cause__, ValueError)
    assert callback.counts()["on_experiment_end"] == 1


def test_with_fail_fast_raise_the_callbacks_own_exception_fails_it(tmp_path):
    callback = Recorder(raise_in="on_trial_result")
    with pytest.raises(ValueError, match="boom in on_trial_result"):
        run_controller({"a": [{"loss": 1.0}]}, tmp_path, callbacks=[callback],
                       fail_fast="raise")


@pytest.mark.parametrize("hook", ["setup", "on_trial_start", "on_step_end",
                                  "on_experiment_end"])
def test_a_raising_loop_hook_fails_the_experiment_with_its_exception(tmp_path, hook):
    callback = Recorder(raise_in=hook)
    with pytest.raises(ValueError, match=f"boom in {hook}"):
        run_controller({"a": [{"loss": 1.0}]}, tmp_path, callbacks=[callback])
    # as in Ray, the experiment ends through on_experiment_end unless setup failed
    assert callback.counts().get("on_experiment_end", 0) == (0 if hook == "setup" else 1)


def test_a_raising_on_checkpoint_is_logged_and_the_run_goes_on(tmp_path, caplog):
    callback = Recorder(raise_in="on_checkpoint")
    with caplog.at_level(logging.ERROR, logger="tunelib"):
        controller, _, _ = run_controller({"a": [checkpointed(loss=1.0)] * 2}, tmp_path,
                                          callbacks=[callback])
    assert trial_named(controller, "a").status == "TERMINATED"
    assert callback.counts()["on_trial_save"] == 2
    assert "on_checkpoint" in caplog.text and "boom in on_checkpoint" in caplog.text


def test_a_raising_on_trial_complete_errors_the_trial(tmp_path):
    """Ray: the trial ends in ERROR, its error file holds the traceback, and
    on_trial_error follows; the experiment itself completes."""
    callback = Recorder(raise_in="on_trial_complete")
    controller, _, recorder = run_controller({"a": [{"loss": 1.0}]}, tmp_path,
                                             callbacks=[callback])
    trial = trial_named(controller, "a")
    assert trial.status == "ERROR"
    assert "boom in on_trial_complete" in trial.get_error()
    assert callback.order("a")[-2:] == ["on_trial_complete", "on_trial_error"]
    assert recorder.finished_status(trial.trial_id) == "ERROR"


# --------------------------------------------------------------------------- end to end


def _fails_once(config):
    if tune.get_checkpoint() is None:
        with tempfile.TemporaryDirectory() as d:
            tune.report({"score": 1.0}, checkpoint=tune.Checkpoint.from_directory(d))
        raise RuntimeError("first attempt")
    tune.report({"score": 2.0})


def test_tuner_fit_calls_rays_hooks_on_worker_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    callback = Recorder()
    tune.Tuner(_fails_once, param_space={"name": tune.grid_search(["a"])},
               run_config=tune.RunConfig(name="hooks", storage_path=str(tmp_path), verbose=0,
                                         callbacks=[callback],
                                         failure_config=tune.FailureConfig(max_failures=1)),
               ).fit()
    assert callback.order("a") == [
        "on_trial_start", "on_trial_result", "on_checkpoint", "on_trial_save",
        "on_trial_recover", "on_trial_start", "on_trial_result", "on_trial_complete"]
