"""Schedulers as pure logic: hand-written results in, Ray's decisions out."""

from __future__ import annotations

import math
import random
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

from tunelib.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    SchedulerController,
    TrialScheduler,
    create_scheduler,
)
from tunelib.schedulers._util import nanpercentile_sorted
from tunelib.trial import PAUSED, PENDING, RUNNING, TERMINATED, Trial

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


class FakeController:
    """The SchedulerController protocol over a plain list of trials."""

    def __init__(self, trials: List[Trial], scheduler: Optional[TrialScheduler] = None):
        self.trials = trials
        self.scheduler = scheduler
        self.stopped: List[Trial] = []

    def get_trials(self) -> List[Trial]:
        return self.trials

    def get_live_trials(self) -> List[Trial]:
        return [t for t in self.trials if t.status in (PENDING, RUNNING, PAUSED)]

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        trial.status = PAUSED

    def stop_trial(self, trial: Trial) -> None:
        was = trial.status
        trial.status = TERMINATED
        self.stopped.append(trial)
        if self.scheduler is not None and was in (PENDING, PAUSED):
            self.scheduler.on_trial_remove(self, trial)

    def exploit(self, trial, donor_trial, new_config, new_tag) -> bool:
        return True


def make_trials(n: int, configs: Optional[List[Dict]] = None) -> List[Trial]:
    configs = configs or [{} for _ in range(n)]
    return [
        Trial(trial_id=f"t{i:05d}", config=dict(c), trainable_name="f")
        for i, c in enumerate(configs)
    ]


def added(scheduler: TrialScheduler, n: int, configs=None, status: str = RUNNING):
    """``n`` trials added to ``scheduler``, then put in ``status`` (RUNNING by default)."""
    trials = make_trials(n, configs)
    ctl = FakeController(trials, scheduler)
    for t in trials:
        scheduler.on_trial_add(ctl, t)
        t.status = status
    return trials, ctl


def result(it: int, **metrics) -> Dict:
    return {"training_iteration": it, "time_total_s": float(it), **metrics}


def run_round_robin(
    scheduler: TrialScheduler,
    curves: List[Callable[[int], float]],
    concurrency: int,
    max_iter: int = 100,
) -> Dict[str, int]:
    """Drive ``scheduler`` like a controller with ``concurrency`` slots, one report per turn.

    Running trials report in turn (oldest first); a freed slot goes to
    ``choose_trial_to_run``. Returns iterations run per trial id.
    """
    trials = make_trials(len(curves))
    ctl = FakeController(trials, scheduler)
    for t in trials:
        scheduler.on_trial_add(ctl, t)
    iters = {t.trial_id: 0 for t in trials}
    running: List[Trial] = []
    while True:
        while len(running) < concurrency:
            nxt = scheduler.choose_trial_to_run(ctl)
            if nxt is None:
                break
            nxt.status = RUNNING
            running.append(nxt)
        if not running:
            return iters
        trial = running.pop(0)
        iters[trial.trial_id] += 1
        i = iters[trial.trial_id]
        res = {
            "training_iteration": i,
            "time_total_s": float(i),
            "loss": curves[trials.index(trial)](i),
        }
        decision = scheduler.on_trial_result(ctl, trial, res)
        if decision == STOP or i >= max_iter:
            trial.status = TERMINATED
            scheduler.on_trial_complete(ctl, trial, res)
        elif decision == PAUSE:
            trial.status = PAUSED
        elif trial.status == RUNNING:
            running.append(trial)


def lr_curves(n: int = 64) -> List[Callable[[int], float]]:
    """loss = lr*10/(i+1) + lr at 0-based step i, lr log-spaced over [1e-3, 1]."""
    return [lambda it, lr=lr: lr * 10 / it + lr for lr in np.geomspace(1e-3, 1, n)]


# --- the interface -------------------------------------------------------------------------


def test_fake_controller_satisfies_the_protocol():
    assert isinstance(FakeController([]), SchedulerController)


def test_fifo_chooses_pending_before_paused_in_submission_order():
    trials, ctl = added(FIFOScheduler(), 3, status=PENDING)
    trials[0].status, trials[1].status = PAUSED, RUNNING
    assert FIFOScheduler().choose_trial_to_run(ctl) is trials[2]
    trials[2].status = RUNNING
    assert FIFOScheduler().choose_trial_to_run(ctl) is trials[0]
    trials[0].status = TERMINATED
    assert FIFOScheduler().choose_trial_to_run(ctl) is None


def test_fifo_chooses_the_same_from_a_mock_controller():
    """Users unit-test schedulers with ``MagicMock()`` controllers: FIFO reads their
    ``get_trials()`` (only tunelib's own controller is scanned from its first unfinished
    trial)."""
    from unittest.mock import MagicMock

    trials = make_trials(3)
    trials[0].status, trials[1].status, trials[2].status = TERMINATED, PAUSED, PENDING
    ctl = MagicMock()
    ctl.get_trials.return_value = trials
    assert FIFOScheduler().choose_trial_to_run(ctl) is trials[2]
    trials[2].status = TERMINATED
    assert FIFOScheduler().choose_trial_to_run(ctl) is trials[1]


def test_fifo_always_continues():
    sched = FIFOScheduler()
    trials, ctl = added(sched, 1)
    assert sched.on_trial_result(ctl, trials[0], result(1, loss=1.0)) == CONTINUE


@pytest.mark.parametrize("cls", [AsyncHyperBandScheduler, MedianStoppingRule, HyperBandScheduler])
def test_set_search_properties_fills_in_and_refuses_to_override(cls):
    sched = cls()
    assert sched.metric is None
    assert sched.set_search_properties("loss", "min") is True
    assert sched.metric == "loss"
    assert sched.set_search_properties("acc", None) is False
    assert sched.set_search_properties(None, "max") is False
    assert cls(metric="a", mode="max").set_search_properties(None, None) is True


def test_set_search_properties_with_only_mode_uses_the_anonymous_metric():
    sched = ASHAScheduler()
    sched.set_search_properties(None, "max")
    assert sched.metric == "_metric"


@pytest.mark.parametrize("cls", [AsyncHyperBandScheduler, MedianStoppingRule, HyperBandScheduler])
def test_adding_a_trial_without_metric_or_mode_is_an_error(cls):
    with pytest.raises(ValueError, match="`metric`.*`mode`"):
        added(cls(metric="loss"), 1)


def test_create_scheduler_by_name_ignores_foreign_kwargs():
    sched = create_scheduler("async_hyperband", metric="loss", mode="min", max_t=7, foo=1)
    assert isinstance(sched, AsyncHyperBandScheduler) and sched._max_t == 7
    assert isinstance(create_scheduler("FIFO"), FIFOScheduler)
    with pytest.raises(ValueError, match="`scheduler`.*no_such"):
        create_scheduler("no_such")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: ASHAScheduler(mode="minimize"), "`mode`.*'min' or 'max'"),
        (lambda: MedianStoppingRule(mode="best"), "`mode`.*'min' or 'max'"),
        (lambda: HyperBandScheduler(mode="up"), "`mode`.*'min' or 'max'"),
        (lambda: ASHAScheduler(reduction_factor=1), "`reduction_factor` must be > 1"),
        (lambda: HyperBandScheduler(reduction_factor=0.5), "`reduction_factor` must be > 1"),
        (lambda: ASHAScheduler(grace_period=10, max_t=5), "`grace_period`.*<= `max_t`"),
        (lambda: ASHAScheduler(max_t=0), "`max_t` must be > 0"),
        (lambda: HyperBandScheduler(max_t=-1), "`max_t` must be > 0"),
        (lambda: ASHAScheduler(grace_period=0), "`grace_period` must be > 0"),
        (lambda: ASHAScheduler(brackets=0), "`brackets`"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_set_search_properties_rejects_a_bad_mode():
    with pytest.raises(ValueError, match="`mode`.*'min' or 'max'"):
        ASHAScheduler().set_search_properties("loss", "maximum")


@pytest.mark.parametrize(
    "make",
    [
        lambda: ASHAScheduler(metric="loss", mode="min"),
        lambda: MedianStoppingRule(metric="loss", mode="min", time_attr="training_iteration"),
        lambda: HyperBandScheduler(metric="loss", mode="min"),
    ],
)
def test_a_metric_never_reported_is_named_with_the_reported_keys(make):
    sched = make()
    trials, ctl = added(sched, 1)
    with pytest.raises(
        ValueError,
        match=r"`loss`.*metric.*Reported keys: \['acc', 'time_total_s', 'training_iteration'\]",
    ):
        sched.on_trial_result(ctl, trials[0], result(1, acc=0.5))


def test_a_time_attr_never_reported_is_named():
    sched = ASHAScheduler(time_attr="epoch", metric="loss", mode="min")
    trials, ctl = added(sched, 1)
    with pytest.raises(ValueError, match="`epoch`.*time_attr.*Reported keys"):
        sched.on_trial_result(ctl, trials[0], result(1, loss=0.5))


def test_a_bare_result_without_the_metric_is_skipped_not_an_error():
    sched = ASHAScheduler(metric="loss", mode="min")
    trials, ctl = added(sched, 1)
    assert (
        sched.on_trial_result(ctl, trials[0], {"training_iteration": 1, "done": True}) == CONTINUE
    )


# --- ASHA ----------------------------------------------------------------------------------


def test_nanpercentile_sorted_matches_numpy_bit_for_bit():
    rng = random.Random(0)
    pool = [0.1, 0.2, 1 / 3, -1.0, 5.0, math.inf, -math.inf, math.nan]
    for k in range(3000):
        n = rng.randint(1, 25)
        vals = [rng.choice(pool) if k % 2 else rng.gauss(0, 1) for _ in range(n)]
        rf = rng.choice([1.5, 2, 2.5, 3, 4])
        q = (1 - 1 / rf) * 100
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = float(np.nanpercentile(vals, q))
        got = nanpercentile_sorted(sorted(v for v in vals if not math.isnan(v)), q)
        assert got == want or (math.isnan(got) and math.isnan(want)), (vals, rf)


def test_asha_rungs_are_grace_times_powers_of_the_reduction_factor():
    sched = ASHAScheduler(metric="loss", mode="min", max_t=100, grace_period=1, reduction_factor=3)
    assert [m for m, _ in sched._brackets[0].rungs()] == [81, 27, 9, 3, 1]


def test_asha_stops_a_trial_below_the_rung_cutoff():
    sched = ASHAScheduler(metric="loss", mode="min", max_t=10, grace_period=1, reduction_factor=2)
    a, b, c = added(sched, 3)[0]
    ctl = FakeController([a, b, c])
    assert sched.on_trial_result(ctl, a, result(1, loss=1.0)) == CONTINUE  # first at rung 1
    assert sched.on_trial_result(ctl, b, result(1, loss=0.5)) == CONTINUE  # better than a
    # cutoff = median of [-1.0, -0.5] = -0.75; c scores -2.0 < cutoff
    assert sched.on_trial_result(ctl, c, result(1, loss=2.0)) == STOP
    # between rungs no decision is taken
    assert sched.on_trial_result(ctl, a, result(1, loss=9.0)) == CONTINUE


def test_asha_maximises_with_mode_max():
    sched = ASHAScheduler(metric="acc", mode="max", max_t=10, grace_period=1, reduction_factor=2)
    a, b, c = added(sched, 3)[0]
    ctl = FakeController([a, b, c])
    sched.on_trial_result(ctl, a, result(1, acc=0.9))
    sched.on_trial_result(ctl, b, result(1, acc=0.8))
    assert sched.on_trial_result(ctl, c, result(1, acc=0.1)) == STOP


def test_asha_stops_at_max_t_unless_told_not_to():
    for stop_last, want in ((True, STOP), (False, CONTINUE)):
        sched = ASHAScheduler(
            metric="loss", mode="min", max_t=4, grace_period=1, stop_last_trials=stop_last
        )
        trials, ctl = added(sched, 1)
        assert sched.on_trial_result(ctl, trials[0], result(4, loss=1.0)) == want


def _ordered(curves, order):
    if order == "descending":
        return curves[::-1]
    if order == "shuffled":
        curves = list(curves)
        random.Random(0).shuffle(curves)
    return curves


# Ray 2.60's AsyncHyperBandScheduler, driven by the same run_round_robin, runs exactly these.
@pytest.mark.parametrize(
    "order, ray_total", [("ascending", 163), ("descending", 6400), ("shuffled", 1280)]
)
def test_asha_total_iterations_on_the_lr_curves_match_ray(order, ray_total):
    sched = ASHAScheduler(metric="loss", mode="min", max_t=100, grace_period=1, reduction_factor=3)
    iters = run_round_robin(sched, _ordered(lr_curves(64), order), concurrency=2)
    total = sum(iters.values())
    print(
        f"\nASHA, 64 lr curves in {order} lr order, 2 concurrent: {total} iterations "
        f"(top trials: {sorted(iters.values(), reverse=True)[:6]})"
    )
    assert total == ray_total
    assert max(iters.values()) == 100


# --- Median stopping rule ------------------------------------------------------------------


def msr(**kw) -> MedianStoppingRule:
    kw.setdefault("time_attr", "training_iteration")
    return MedianStoppingRule(metric="loss", mode="min", **kw)


def test_median_rule_stops_a_trial_worse_than_the_median_of_running_means():
    sched = msr(grace_period=1, min_samples_required=2)
    trials, ctl = added(sched, 3)
    good1, good2, bad = trials
    for i in (1, 2):
        assert sched.on_trial_result(ctl, good1, result(i, loss=1.0)) == CONTINUE
        assert sched.on_trial_result(ctl, good2, result(i, loss=2.0)) == CONTINUE
    # running means at t=1 are 1.0 and 2.0 -> median 1.5; bad's best 3.0 is worse
    assert sched.on_trial_result(ctl, bad, result(1, loss=3.0)) == STOP


def test_median_rule_continues_a_trial_as_good_as_the_median():
    sched = msr(grace_period=1, min_samples_required=2)
    trials, ctl = added(sched, 3)
    for t, loss in zip(trials, (1.0, 2.0)):
        sched.on_trial_result(ctl, t, result(1, loss=loss))
    assert sched.on_trial_result(ctl, trials[2], result(1, loss=1.5)) == CONTINUE


def test_median_rule_does_not_judge_inside_the_grace_period():
    sched = msr(grace_period=5, min_samples_required=1)
    trials, ctl = added(sched, 2)
    for i in range(1, 6):
        sched.on_trial_result(ctl, trials[0], result(i, loss=0.0))
    assert sched.on_trial_result(ctl, trials[1], result(4, loss=100.0)) == CONTINUE
    assert sched.on_trial_result(ctl, trials[1], result(5, loss=100.0)) == STOP


def test_median_rule_running_mean_starts_at_the_grace_period():
    # Other trial: huge losses before grace, small after. Its running mean from t=3 is 1.0.
    sched = msr(grace_period=3, min_samples_required=1)
    trials, ctl = added(sched, 2)
    for i, loss in enumerate((100.0, 100.0, 1.0, 1.0), start=1):
        sched.on_trial_result(ctl, trials[0], result(i, loss=loss))
    assert sched.on_trial_result(ctl, trials[1], result(3, loss=2.0)) == STOP


def test_median_rule_only_counts_trials_that_reached_the_same_time():
    sched = msr(grace_period=1, min_samples_required=1)
    trials, ctl = added(sched, 2)
    sched.on_trial_result(ctl, trials[0], result(1, loss=0.0))
    # trials[0] has not reached t=2, so there is nothing to compare with
    assert sched.on_trial_result(ctl, trials[1], result(2, loss=5.0)) == CONTINUE


def test_median_rule_yields_when_samples_are_short_and_trials_wait():
    sched = msr(grace_period=1, min_samples_required=3, min_time_slice=2)
    trials, ctl = added(sched, 2)
    trials[1].status = PENDING
    trials[0].status = RUNNING
    assert sched.on_trial_result(ctl, trials[0], result(1, loss=1.0)) == PAUSE
    assert (
        sched.on_trial_result(ctl, trials[0], result(2, loss=1.0)) == CONTINUE
    )  # within time slice
    assert sched.on_trial_result(ctl, trials[0], result(4, loss=1.0)) == PAUSE


def test_median_rule_soft_stop_pauses_then_falls_back_to_fifo():
    sched = msr(grace_period=1, min_samples_required=1, hard_stop=False)
    trials, ctl = added(sched, 2)
    sched.on_trial_result(ctl, trials[0], result(1, loss=0.0))
    assert sched.on_trial_result(ctl, trials[1], result(1, loss=9.0)) == PAUSE
    assert sched.on_trial_result(ctl, trials[1], result(2, loss=9.0)) == CONTINUE


def test_median_rule_ignores_non_finite_running_means():
    sched = msr(grace_period=1, min_samples_required=2)
    trials, ctl = added(sched, 3)
    sched.on_trial_result(ctl, trials[0], result(1, loss=float("nan")))
    sched.on_trial_result(ctl, trials[1], result(1, loss=0.0))
    # only one finite running mean: not enough samples, so no stop
    assert sched.on_trial_result(ctl, trials[2], result(1, loss=9.0)) == CONTINUE


def test_median_rule_handles_times_reported_out_of_order():
    sched = msr(grace_period=1, min_samples_required=1)
    trials, ctl = added(sched, 2)
    for i in (1, 2, 3):
        sched.on_trial_result(ctl, trials[0], result(i, loss=1.0))
    sched.on_trial_result(ctl, trials[0], result(2, loss=1.0))  # restored from a checkpoint
    assert sched.on_trial_result(ctl, trials[1], result(2, loss=0.5)) == CONTINUE
    assert sched.on_trial_result(ctl, trials[1], result(3, loss=5.0)) == CONTINUE  # t0 last at 2


@pytest.mark.parametrize("mode, ray_stop_at", [("min", 6), ("max", 3)])
def test_median_rule_ties_on_identical_histories_break_exactly_as_in_ray(mode, ray_stop_at):
    # Running means of 0.1, 0.1, ... are not exactly 0.1 in floating point, so Ray's
    # verdict on a tie depends on np.mean's rounding; ours must land on the same step.
    sched = MedianStoppingRule(
        time_attr="training_iteration",
        metric="m",
        mode=mode,
        grace_period=1,
        min_samples_required=2,
    )
    trials, ctl = added(sched, 3)
    stops = []
    for i in range(1, 40):
        for t in trials:
            if t.status == RUNNING and sched.on_trial_result(ctl, t, result(i, m=0.1)) == STOP:
                t.status = TERMINATED
                stops.append((i, t.trial_id))
    assert stops == [(ray_stop_at, "t00002")]


# --- HyperBand -----------------------------------------------------------------------------


def test_hyperband_brackets_follow_ray_sizes():
    sched = HyperBandScheduler(metric="loss", mode="min", max_t=9, reduction_factor=3)
    added(sched, 9 + 5 + 3)
    brackets = sched._hyperbands[0]
    assert [(b._n0, b._r0) for b in brackets] == [(3, 9), (5, 3), (9, 1)]


def test_hyperband_pauses_at_the_milestone_then_promotes_the_best():
    sched = HyperBandScheduler(metric="loss", mode="min", max_t=9, reduction_factor=3)
    # The first bracket (s=0) holds 3 trials and never halves; the next (s=1) holds 5, r=3.
    trials, ctl = added(sched, 8, status=PENDING)
    bracket = sched._trial_info[trials[3]][0]
    members = bracket.current_trials()
    assert members == trials[3:8] and bracket._cumul_r == 3
    for t in members:
        t.status = RUNNING
    losses = {t: float(k) for k, t in enumerate(members)}  # members[0] best
    for step in (1, 2):
        for t in members:
            assert sched.on_trial_result(ctl, t, result(step, loss=losses[t])) == CONTINUE
    # at the milestone each trial pauses until the last one arrives
    for t in members[:-1]:
        assert sched.on_trial_result(ctl, t, result(3, loss=losses[t])) == PAUSE
        t.status = PAUSED
    last = members[-1]
    # the last (worst) trial triggers halving: it is stopped, 1 of 5 ... ceil(5/3)=2 survive
    assert sched.on_trial_result(ctl, last, result(3, loss=losses[last])) == STOP
    assert set(ctl.stopped) == set(members[2:4])
    assert bracket.trials_to_unpause == set(members[:2])
    # choose_trial_to_run first offers PENDING trials (the other brackets), then the promoted
    for t in trials[:3]:
        t.status = RUNNING
    assert sched.choose_trial_to_run(ctl) in members[:2]


def test_hyperband_does_not_resume_paused_trials_before_halving():
    sched = HyperBandScheduler(metric="loss", mode="min", max_t=9, reduction_factor=3)
    trials, ctl = added(sched, 8)
    members = trials[3:8]
    for t in trials:
        t.status = RUNNING
    sched.on_trial_result(ctl, members[0], result(3, loss=1.0))
    members[0].status = PAUSED
    assert sched.choose_trial_to_run(ctl) is None


def test_hyperband_run_gives_more_iterations_to_better_trials():
    sched = HyperBandScheduler(metric="loss", mode="min", max_t=27, reduction_factor=3)
    iters = run_round_robin(sched, lr_curves(20), concurrency=3, max_iter=27)
    by_rank = list(iters.values())
    assert max(by_rank) == 27
    assert sum(by_rank) < 20 * 27


def test_strict_metric_checking_can_be_disabled_as_in_ray(monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    sched = ASHAScheduler(metric="loss", mode="min")
    trials, ctl = added(sched, 1)
    assert sched.on_trial_result(ctl, trials[0], result(1, acc=0.5)) == CONTINUE
