"""The controller's side of stops and crashes, against the fake executor and recorder, in
milliseconds: a stop request keeps unfinished trials resumable, the state knows every trial
before it starts, and restored trials are taken over in their own dirs (issue 14)."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from _controller_fakes import make_controller, run_controller

from tunelib import _layout
from tunelib._lifecycle import TrialStatus
from tunelib.tune import Callback, Stopper


def _saved_statuses(controller):
    path = _layout.find_experiment_state(controller.spec.fs, controller.spec.experiment_path)
    with open(path) as f:
        state = json.load(f)
    return {json.loads(info)["trial_id"]: json.loads(info)["status"]
            for info, _ in state["trial_data"]}


class StopAfter(Callback):
    """Asks the controller to stop (as a signal handler does) after ``n`` results."""

    def __init__(self, n, reason="SIGINT"):
        self.n, self.reason, self.seen, self.controller = n, reason, 0, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.n:
            self.controller.request_stop(self.reason)


def _forever(config):
    return itertools.repeat({"loss": 1.0})


def test_stop_request_keeps_running_trials_resumable(tmp_path):
    stop = StopAfter(5)
    controller, executor, recorder = make_controller(
        _forever, tmp_path, param_space={"x": 1}, num_samples=3, capacity=2, callbacks=[stop])
    stop.controller = controller
    executor.start()
    controller.run()  # returns: the caller prints the hint and returns the results
    assert controller.interrupted == "SIGINT"
    running = [t for t in controller.trials if t.status == TrialStatus.RUNNING]
    assert len(running) == 2 and sorted(executor.killed) == sorted(t.trial_id for t in running)
    saved = _saved_statuses(controller)
    assert sorted(saved.values()) == ["PENDING", "RUNNING", "RUNNING"]  # as Ray saves them
    for trial in running:  # their records are closed, saying why and that they resume
        finished = recorder.finished(trial.trial_id)
        assert finished.args["status"] == "INTERRUPTED"   # Prefect: Cancelled, resumable
        assert "interrupted (SIGINT)" in finished.args["message"]
    assert [c.args["status"] for c in recorder.called("experiment_finished")] == ["CANCELLED"]


def test_an_exception_out_of_the_loop_keeps_running_trials_resumable(tmp_path):
    class Interrupt(Callback):
        def on_trial_result(self, **info):
            raise KeyboardInterrupt  # a second Ctrl-C

    controller, executor, _ = make_controller(
        _forever, tmp_path, param_space={"x": 1}, num_samples=2, capacity=2,
        callbacks=[Interrupt()])
    executor.start()
    with pytest.raises(KeyboardInterrupt):
        controller.run()
    assert controller.interrupted == "KeyboardInterrupt"
    assert set(_saved_statuses(controller).values()) <= {"RUNNING", "PENDING"}


def test_the_state_knows_every_trial_before_it_starts(tmp_path):
    controller, executor, _ = make_controller(
        lambda config: [{"loss": 1.0}] * 3, tmp_path, param_space={"x": 1}, num_samples=5,
        capacity=2)
    start_trial = executor.start_trial

    def checked_start(spec):
        assert spec.trial_id in _saved_statuses(controller), f"{spec.trial_id} not saved"
        start_trial(spec)

    executor.start_trial = checked_start
    executor.start()
    controller.run()
    assert len(executor.started) == 5


def test_restored_trials_are_taken_over_in_their_dirs(tmp_path):
    """A resumed trial without failures loses error files a dead driver's worker left;
    params are written only where the first attempt had not written them yet."""
    first, executor, _ = run_controller(lambda config: [{"loss": 1.0}], tmp_path,
                                        param_space={"x": 1}, num_samples=2)
    restored = list(first.trials)
    for trial in restored:
        trial.status = TrialStatus.PENDING
    with_params, without_params = (os.path.join(first.spec.experiment_path, t.dirname)
                                   for t in restored)
    for d in (with_params, without_params):
        os.makedirs(d, exist_ok=True)
        for name in ("error.txt", "error.pkl"):
            open(os.path.join(d, name), "w").close()
    open(os.path.join(with_params, "params.json"), "w").close()

    controller, executor, _ = make_controller(
        lambda config: [{"loss": 1.0}], tmp_path, param_space={"x": 1}, num_samples=2)
    controller = type(controller)(controller.spec, executor, controller.recorder,
                                  controller.search_alg, controller.scheduler, None,
                                  restored_trials=restored)
    executor.start()
    controller.run()
    for d in (with_params, without_params):
        assert not os.path.exists(os.path.join(d, "error.txt"))
        assert not os.path.exists(os.path.join(d, "error.pkl"))
    write_params = {s.trial_dirname: s.write_params for s in executor.started}
    assert write_params[restored[0].dirname] is False
    assert write_params[restored[1].dirname] is True


def test_restored_trials_ended_without_running_here_are_not_recorded(tmp_path):
    """They have no flow run in this run (closing one was the 'flow run was not created'
    warning); the experiment itself is recorded finished."""

    class StopAll(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return True

    first, _, _ = run_controller(lambda config: [{"loss": 1.0}], tmp_path,
                                 param_space={"x": 1}, num_samples=2)
    restored = list(first.trials)
    for trial in restored:
        trial.status = TrialStatus.PENDING
        assert trial.attempts == 1
    controller, executor, recorder = make_controller(
        lambda config: [{"loss": 1.0}], tmp_path, param_space={"x": 1}, num_samples=2)
    controller = type(controller)(controller.spec, executor, recorder, controller.search_alg,
                                  controller.scheduler, StopAll(),
                                  restored_trials=restored)
    executor.start()
    controller.run()
    assert not executor.started
    assert not recorder.called("trial_finished")
    assert [c.args["status"] for c in recorder.called("experiment_finished")] == ["COMPLETED"]
