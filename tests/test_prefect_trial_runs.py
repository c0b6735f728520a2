"""The recorder's per-trial state machine (tunelib.prefect._trial_runs): which state each
engine event writes to a trial's flow run. Pure, no Prefect."""

from __future__ import annotations

from tunelib._lifecycle import TrialOutcome
from tunelib.prefect._payloads import UNLIMITED_RETRIES, StateKind
from tunelib.prefect._trial_runs import Phase, TrialRun


def started(max_failures: int = 1) -> TrialRun:
    tr = TrialRun("t1", "train_t1")
    tr.start(0, {"lr": float("nan")}, max_failures)
    return tr


def test_the_first_start_creates_the_flow_run_in_running():
    tr = TrialRun("t1", "train_t1")
    change = tr.start(0, {"lr": float("nan")}, max_failures=-1)
    assert change.create and change.state.kind is StateKind.RUNNING
    assert change.state.message == "started"
    assert tr.phase is Phase.RUNNING and tr.run_count == 1 and tr.retries == UNLIMITED_RETRIES
    assert tr.config == {"lr": None}  # JSON-safe for Prefect


def test_a_failure_with_retries_left_is_proposed_as_failed_for_the_retry_rule():
    tr = started(max_failures=1)
    change = tr.fail("ValueError: x", will_retry=True)
    assert change.state.kind is StateKind.FAILED and change.expect_retry and not change.force
    assert tr.phase is Phase.AWAITING_RETRY
    retry = tr.start(1, {}, 1)
    assert retry.state.name == "Retrying" and retry.state.message == "attempt 2"
    assert tr.run_count == 2 and tr.phase is Phase.RUNNING


def test_a_retry_after_resumes_asks_for_awaiting_retry_directly():
    tr = started(max_failures=1)
    tr.pause()
    tr.start(1, {}, 1)                    # resumed: run_count 2 > retries 1
    change = tr.fail("boom", will_retry=True)
    assert change.state.kind is StateKind.AWAITING_RETRY and change.force


def test_pause_then_start_resumes_the_same_run():
    tr = started()
    assert tr.pause().state.kind is StateKind.PAUSED and tr.phase is Phase.PAUSED
    change = tr.start(1, {}, 1)
    assert not change.create and change.state.name == "Resumed" and tr.resumes == 1


def test_a_final_failure_is_recorded_once():
    tr = started(max_failures=0)
    change = tr.fail("x" * 5000, will_retry=False)
    assert change.force and len(change.state.message) == 2000
    assert tr.phase is Phase.FAILED_PENDING_FINISH
    assert tr.finish(TrialOutcome.ERROR, "x") is None and tr.phase is Phase.FINAL


def test_outcomes_map_to_final_states():
    stopped = started().finish(TrialOutcome.STOPPED, "stopped early by ASHA")
    assert stopped.state.kind is StateKind.COMPLETED and stopped.state.name == "Stopped"
    assert stopped.state.message == "stopped early by ASHA" and stopped.force
    done = started().finish(TrialOutcome.TERMINATED)
    assert done.state.kind is StateKind.COMPLETED and done.state.name is None
    errored = started().finish(TrialOutcome.ERROR)
    assert errored.state.kind is StateKind.FAILED and errored.describe == "final state (Failed)"


def test_an_attached_trial_never_asks_for_a_state_write():
    tr = TrialRun("t1", "train_t1")
    tr.attach("run-1")
    assert tr.start(0, {}, 1) is None and tr.flow_run_id == "run-1"
    assert tr.fail("x", will_retry=True) is None
    assert tr.pause() is None
    assert tr.finish(TrialOutcome.STOPPED) is None
    assert tr.phase is Phase.FINAL and tr.final_status is TrialOutcome.STOPPED


def test_buffered_results_become_one_batch_named_by_their_iterations():
    tr = started()
    for i in (3, 4, 5):
        tr.add_result(100.0 + i, {"training_iteration": i, "loss": 1 / i})
    assert tr.oldest_result_at() == 103.0
    assert tr.buffered_description() == "3 buffered results (iterations 3-5)"
    batch = tr.take_batch()
    assert (batch.first, batch.last, batch.seq) == (3, 5, 1)
    assert batch.describe == "3 results (iterations 3-5)"
    assert tr.take_batch() is None
    tr.recorded(batch)
    tr.add_result(110.0, {"loss": 0.1})  # no training_iteration: counted on
    assert (tr.take_batch().first, tr.batches) == (4, 2)


def test_cancelled_and_interrupted_trials_end_cancelled_saying_which():
    cancelled = started().finish(TrialOutcome.CANCELLED, "")
    assert cancelled.state.kind is StateKind.CANCELLED and cancelled.force
    assert cancelled.state.message == "cancelled from Prefect"
    interrupted = started().finish(TrialOutcome.INTERRUPTED, "Ctrl-C")
    assert interrupted.state.kind is StateKind.CANCELLED and interrupted.force
    assert interrupted.state.message.startswith("interrupted (Ctrl-C); resumes")
    tr = started()
    assert tr.live
    tr.finish(TrialOutcome.INTERRUPTED)
    assert not tr.live and tr.phase is Phase.FINAL
