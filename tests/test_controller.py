"""The experiment controller against a fake executor and a fake recorder: scripted trials
in, trial statuses, records and decisions out, in milliseconds (no Prefect, no workers)."""

from __future__ import annotations

import itertools
from typing import List

import pytest
from _controller_fakes import FakeRecorder, checkpointed, run_controller, trial_named

from tunelib.error import TuneError
from tunelib.schedulers import FIFOScheduler
from tunelib.schedulers.trial_scheduler import TrialScheduler
from tunelib.trial import RUNNING
from tunelib.tune import Callback

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


def losses(*values: float) -> List[dict]:
    """Steps reporting these losses, one result each."""
    return [{"loss": v} for v in values]


def forever() -> itertools.repeat:
    """Steps of a trainable that never returns."""
    return itertools.repeat({"loss": 1.0})


class StopAt(FIFOScheduler):
    """Stops every trial at ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration

    def on_trial_result(self, tune_controller, trial, result):
        return self.STOP if result["training_iteration"] >= self.iteration else self.CONTINUE


class PauseOnceAt(FIFOScheduler):
    """Pauses each trial once, at ``iteration``; FIFO resumes it when a slot is free."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration
        self.paused: set = set()

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == self.iteration and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return self.PAUSE
        return self.CONTINUE


class SeesIterations(FIFOScheduler):
    """FIFO that keeps the iterations it was asked about."""

    def __init__(self):
        super().__init__()
        self.seen: List[int] = []

    def on_trial_result(self, tune_controller, trial, result):
        self.seen.append(result["training_iteration"])
        return self.CONTINUE


class ActsOnOthersAtFirstResultOfA(FIFOScheduler):
    """At trial "a"'s first result, stops or pauses (``action``) every other running trial
    through the controller, as HyperBand and PBT do."""

    def __init__(self, action: str):
        super().__init__()
        self.action = action
        self.acted = False

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config["name"] == "a" and not self.acted:
            self.acted = True
            for other in tune_controller.get_live_trials():
                if other is not trial and other.status == RUNNING:
                    getattr(tune_controller, self.action)(other)
        return self.CONTINUE


class KeepsCalls(Callback):
    def __init__(self):
        self.results: List[tuple] = []
        self.completed: List[str] = []
        self.ended_with: List[list] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append((trial.trial_id, result["training_iteration"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed.append(trial.trial_id)

    def on_experiment_end(self, trials, **info):
        self.ended_with.append(list(trials))


# --------------------------------------------------------------------------- FIFO


def test_fifo_runs_every_trial_to_termination(tmp_path):
    controller, _, _ = run_controller(
        {"a": losses(3, 2, 1), "b": losses(3, 2, 1), "c": losses(3, 2, 1)}, tmp_path,
        capacity=2)

    assert [t.status for t in controller.trials] == ["TERMINATED"] * 3
    assert [t.last_result["training_iteration"] for t in controller.trials] == [3, 3, 3]


def test_fifo_answers_every_result_with_continue(tmp_path):
    controller, executor, _ = run_controller({"a": losses(3, 2, 1)}, tmp_path)

    assert executor.decisions_for(trial_named(controller, "a").trial_id) == [CONTINUE] * 3


def test_trial_is_recorded_started_then_each_result_then_finished_terminated(tmp_path):
    controller, _, recorder = run_controller({"a": losses(3, 2), "b": losses(1)}, tmp_path)

    a, b = trial_named(controller, "a"), trial_named(controller, "b")
    assert recorder.methods_for(a.trial_id) == [
        "trial_started", "trial_result", "trial_result", "trial_finished"]
    assert recorder.methods_for(b.trial_id) == ["trial_started", "trial_result", "trial_finished"]
    assert [c.args["result"]["loss"] for c in recorder.of_trial(a.trial_id)
            if c.method == "trial_result"] == [3, 2]
    assert recorder.finished_status(a.trial_id) == "TERMINATED"
    assert recorder.finished_status(b.trial_id) == "TERMINATED"


def test_experiment_is_recorded_started_and_finished_completed_once(tmp_path):
    _, _, recorder = run_controller({"a": losses(1), "b": losses(1)}, tmp_path)

    assert len(recorder.called("experiment_started")) == 1
    [finished] = recorder.called("experiment_finished")
    assert finished.args["status"] == "COMPLETED"
    assert len(finished.args["summary_rows"]) == 2
    assert recorder.calls[0].method == "experiment_started"
    assert recorder.calls[-1].method == "experiment_finished"


# --------------------------------------------------------------------------- decisions


def test_stopper_decision_wins_over_the_scheduler(tmp_path):
    scheduler = SeesIterations()
    controller, executor, _ = run_controller(
        {"a": losses(5, 4, 3, 2, 1)}, tmp_path, scheduler=scheduler,
        stopper={"training_iteration": 2})

    assert executor.decisions_for(trial_named(controller, "a").trial_id) == [CONTINUE, STOP]
    assert scheduler.seen == [1]  # not asked about the result the stopper stopped


def test_stop_queued_on_another_trial_reaches_it_at_its_next_result(tmp_path):
    controller, executor, _ = run_controller(
        {"a": losses(3, 2, 1), "b": losses(3, 2, 1)}, tmp_path,
        scheduler=ActsOnOthersAtFirstResultOfA("stop_trial"), capacity=2)

    b = trial_named(controller, "b")
    assert executor.decisions_for(b.trial_id) == [STOP]
    assert b.status == "TERMINATED"
    assert b.last_result["training_iteration"] == 1


def test_pause_queued_on_another_trial_reaches_it_at_its_next_result(tmp_path):
    controller, executor, recorder = run_controller(
        {"a": losses(3, 2, 1), "b": losses(3, 2, 1)}, tmp_path,
        scheduler=ActsOnOthersAtFirstResultOfA("pause_trial"), capacity=2)

    b = trial_named(controller, "b")
    assert executor.decisions_for(b.trial_id)[0] == PAUSE
    assert "trial_paused" in recorder.methods_for(b.trial_id)
    assert b.status == "TERMINATED"


# --------------------------------------------------------------------------- stopping early


def test_trial_stopped_by_scheduler_terminates_at_that_iteration(tmp_path):
    controller, executor, _ = run_controller({"a": losses(5, 4, 3, 2, 1)}, tmp_path,
                                             scheduler=StopAt(2))

    a = trial_named(controller, "a")
    assert a.status == "TERMINATED"
    assert a.last_result["training_iteration"] == 2
    assert executor.decisions_for(a.trial_id) == [CONTINUE, STOP]


def test_trial_stopped_by_scheduler_is_recorded_as_stopped_by_it(tmp_path):
    controller, _, recorder = run_controller({"a": losses(5, 4, 3, 2, 1)}, tmp_path,
                                             scheduler=StopAt(2))

    finished = recorder.finished(trial_named(controller, "a").trial_id)
    assert finished.args["status"] == "STOPPED"
    assert "scheduler" in finished.args["message"]


def test_trial_stopped_by_stopper_terminates_at_that_iteration(tmp_path):
    controller, _, _ = run_controller({"a": losses(5, 4, 3, 2, 1)}, tmp_path,
                                      stopper={"training_iteration": 2})

    a = trial_named(controller, "a")
    assert a.status == "TERMINATED"
    assert a.last_result["training_iteration"] == 2


def test_trial_stopped_by_stopper_is_recorded_as_stopped_by_it(tmp_path):
    controller, _, recorder = run_controller({"a": losses(5, 4, 3, 2, 1)}, tmp_path,
                                             stopper={"training_iteration": 2})

    finished = recorder.finished(trial_named(controller, "a").trial_id)
    assert finished.args["status"] == "STOPPED"
    assert "stopper" in finished.args["message"]


# --------------------------------------------------------------------------- failures


def test_trial_failing_once_is_retried_and_terminates(tmp_path):
    controller, executor, _ = run_controller(
        {"a": [{"loss": 2.0}, ValueError("boom"), {"loss": 1.0}]}, tmp_path, max_failures=2)

    a = trial_named(controller, "a")
    assert a.status == "TERMINATED"
    assert a.num_failures == 1
    assert len(executor.starts_of(a.trial_id)) == 2


def test_retry_restores_from_the_latest_checkpoint(tmp_path):
    steps = [checkpointed(loss=3.0), checkpointed(loss=2.0), {"loss": 1.5}, ValueError("boom"),
             {"loss": 1.0}]
    controller, executor, _ = run_controller({"a": steps}, tmp_path, max_failures=2)

    first, retry = executor.starts_of(trial_named(controller, "a").trial_id)
    assert first.restore_checkpoint is None
    assert retry.restore_checkpoint == f"{first.trial_path}/checkpoint_000001"
    assert retry.start_iteration == 2


def test_retried_failure_is_recorded_as_will_retry(tmp_path):
    controller, _, recorder = run_controller(
        {"a": [{"loss": 2.0}, ValueError("boom"), {"loss": 1.0}]}, tmp_path, max_failures=2)

    a = trial_named(controller, "a").trial_id
    assert recorder.will_retry(a) == [True]
    assert "boom" in [c for c in recorder.of_trial(a) if c.method == "trial_failed"][0].args[
        "error"]
    assert recorder.finished_status(a) == "TERMINATED"


def test_trial_failing_more_than_max_failures_ends_in_error(tmp_path):
    steps = [ValueError("one"), ValueError("two"), ValueError("three"), {"loss": 1.0}]
    controller, executor, _ = run_controller({"a": steps}, tmp_path, max_failures=2)

    a = trial_named(controller, "a")
    assert a.status == "ERROR"
    assert a.num_failures == 3
    assert len(executor.starts_of(a.trial_id)) == 3


def test_final_failure_is_recorded_as_no_retry_then_finished_error(tmp_path):
    steps = [ValueError("one"), ValueError("two"), ValueError("three"), {"loss": 1.0}]
    controller, _, recorder = run_controller({"a": steps}, tmp_path, max_failures=2)

    a = trial_named(controller, "a").trial_id
    assert recorder.will_retry(a) == [True, True, False]
    assert recorder.methods_for(a)[-2:] == ["trial_failed", "trial_finished"]
    assert recorder.finished_status(a) == "ERROR"
    assert "three" in recorder.finished(a).args["message"]


def test_experiment_with_an_errored_trial_is_recorded_failed(tmp_path):
    _, _, recorder = run_controller({"a": [ValueError("boom")], "b": losses(1)}, tmp_path)

    [finished] = recorder.called("experiment_finished")
    assert finished.args["status"] == "FAILED"


def test_max_failures_minus_one_retries_until_success(tmp_path):
    steps = [ValueError(str(i)) for i in range(5)] + [{"loss": 1.0}]
    controller, executor, _ = run_controller({"a": steps}, tmp_path, max_failures=-1)

    a = trial_named(controller, "a")
    assert a.status == "TERMINATED"
    assert a.num_failures == 5
    assert len(executor.starts_of(a.trial_id)) == 6


def test_fail_fast_ends_the_other_trials_when_one_fails_for_good(tmp_path):
    controller, _, recorder = run_controller(
        {"bad": [ValueError("boom")], "running": forever(), "pending": forever()}, tmp_path,
        fail_fast=True, capacity=2)

    assert trial_named(controller, "bad").status == "ERROR"
    assert trial_named(controller, "running").status == "TERMINATED"
    assert trial_named(controller, "pending").status == "TERMINATED"
    assert len(recorder.called("experiment_finished")) == 1


def test_fail_fast_drops_results_already_polled_from_the_trials_it_ends(tmp_path):
    """The failure and the other trial's result arrive in one poll; once fail_fast has
    ended that trial, its result is no longer recorded (nor decided on)."""
    controller, _, recorder = run_controller(
        {"bad": [ValueError("boom")], "running": forever()}, tmp_path, fail_fast=True,
        capacity=2)

    assert recorder.methods_for(trial_named(controller, "running").trial_id)[-1] == (
        "trial_finished")


def test_fail_fast_raise_raises_the_trial_error_from_run(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        run_controller({"bad": [ValueError("boom")], "other": forever()}, tmp_path,
                       fail_fast="raise", capacity=2)


# --------------------------------------------------------------------------- time budget


def test_time_budget_ends_trials_that_never_return(tmp_path):
    controller, _, _ = run_controller({"a": forever(), "b": forever()}, tmp_path,
                                      time_budget_s=0.05)

    assert [t.status for t in controller.trials] == ["TERMINATED", "TERMINATED"]


def test_time_budget_stop_is_recorded_as_stopped_naming_the_budget(tmp_path):
    controller, _, recorder = run_controller({"a": forever()}, tmp_path, time_budget_s=0.05)

    finished = recorder.finished(trial_named(controller, "a").trial_id)
    assert finished.args["status"] == "STOPPED"
    assert "time budget" in finished.args["message"]


# --------------------------------------------------------------------------- pause / resume


def test_paused_trial_resumes_where_it_paused_and_terminates(tmp_path):
    controller, executor, _ = run_controller({"a": losses(4, 3, 2, 1)}, tmp_path,
                                             scheduler=PauseOnceAt(2))

    a = trial_named(controller, "a")
    first, resumed = executor.starts_of(a.trial_id)
    assert resumed.start_iteration == 2
    assert resumed.restore_checkpoint is not None
    assert a.status == "TERMINATED"
    assert a.last_result["training_iteration"] == 4


def test_pause_and_resume_are_recorded(tmp_path):
    controller, _, recorder = run_controller({"a": losses(4, 3, 2, 1)}, tmp_path,
                                             scheduler=PauseOnceAt(2))

    a = trial_named(controller, "a").trial_id
    assert recorder.methods_for(a) == [
        "trial_started", "trial_result", "trial_result", "trial_paused",
        "trial_started", "trial_result", "trial_result", "trial_finished"]
    assert [c.args["attempt"] for c in recorder.of_trial(a) if c.method == "trial_started"] == [
        0, 1]
    assert recorder.finished_status(a) == "TERMINATED"


# --------------------------------------------------------------------------- validation


def test_result_without_the_metric_raises_tune_error_naming_it(tmp_path):
    with pytest.raises(TuneError, match="'loss'"):
        run_controller({"a": [{"accuracy": 0.9}]}, tmp_path, metric="loss", mode="min")


# --------------------------------------------------------------------------- callbacks


def test_callback_sees_every_result(tmp_path):
    callback = KeepsCalls()
    controller, _, _ = run_controller({"a": losses(2, 1)}, tmp_path, callbacks=[callback])

    a = trial_named(controller, "a").trial_id
    assert callback.results == [(a, 1), (a, 2)]


def test_callback_sees_each_trial_complete(tmp_path):
    callback = KeepsCalls()
    controller, _, _ = run_controller({"a": losses(1), "b": losses(1)}, tmp_path,
                                      callbacks=[callback])

    assert sorted(callback.completed) == sorted(t.trial_id for t in controller.trials)


def test_callback_sees_the_experiment_end_once_with_every_trial(tmp_path):
    callback = KeepsCalls()
    controller, _, _ = run_controller({"a": losses(1), "b": losses(1)}, tmp_path,
                                      callbacks=[callback])

    assert callback.ended_with == [controller.trials]


def test_the_fake_recorder_implements_the_recorder_protocol():
    from tunelib.recording import Recorder

    assert isinstance(FakeRecorder(), Recorder)


# --------------------------------------------------------------------------- Prefect's Cancel


class CancelsAtFirstResultOfA(FIFOScheduler):
    """At trial "a"'s first result, asks for what a cancel in Prefect asks for: one other
    trial stopped (``request_trial_stop``), or the whole experiment (``request_stop``)."""

    def __init__(self, whole_experiment: bool = False):
        super().__init__()
        self.whole_experiment = whole_experiment

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config["name"] == "a" and result["training_iteration"] == 1:
            if self.whole_experiment:
                tune_controller.request_stop("the experiment's Prefect flow run was cancelled")
            for other in tune_controller.get_trials():
                if other.config["name"] == "b":
                    tune_controller.request_trial_stop(other.trial_id)
        return self.CONTINUE


def test_cancelled_trial_run_stops_that_trial_only_and_is_recorded_cancelled(tmp_path):
    controller, _, recorder = run_controller(
        {"a": losses(3, 2, 1), "b": forever()}, tmp_path, scheduler=CancelsAtFirstResultOfA())

    a, b = trial_named(controller, "a"), trial_named(controller, "b")
    assert (a.status, b.status) == ("TERMINATED", "TERMINATED")
    assert a.last_result["training_iteration"] == 3
    assert recorder.finished_status(b.trial_id) == "CANCELLED"
    assert "cancelled" in recorder.finished(b.trial_id).args["message"]
    assert recorder.finished_status(a.trial_id) == "TERMINATED"
    assert recorder.called("experiment_finished")[0].args["status"] == "COMPLETED"


def test_interrupted_experiment_is_recorded_cancelled_with_its_trials_interrupted(tmp_path):
    controller, _, recorder = run_controller(
        {"a": forever(), "c": forever()}, tmp_path,
        scheduler=CancelsAtFirstResultOfA(whole_experiment=True))

    assert controller.interrupted
    assert [t.status for t in controller.trials] == ["RUNNING", "RUNNING"]  # resumable
    assert {recorder.finished_status(t.trial_id) for t in controller.trials} == {"INTERRUPTED"}
    assert recorder.called("experiment_finished")[0].args["status"] == "CANCELLED"
