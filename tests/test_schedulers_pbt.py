"""PopulationBasedTraining as pure logic: who exploits whom, and what config comes out."""

from __future__ import annotations

import random
from typing import Dict, List

import pytest

from tunelib.error import TuneError
from tunelib.schedulers import PopulationBasedTraining, TrialScheduler
from tunelib.trial import PAUSED, PENDING, RUNNING, TERMINATED, Trial

CONTINUE, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.PAUSE


class FakeController:
    """The SchedulerController protocol; ``exploit`` applies the request as the controller must."""

    def __init__(self, trials: List[Trial], has_checkpoint: bool = True):
        self.trials = trials
        self.has_checkpoint = has_checkpoint
        self.exploits: List[tuple] = []
        self.paused: List[tuple] = []

    def get_trials(self) -> List[Trial]:
        return self.trials

    def get_live_trials(self) -> List[Trial]:
        return [t for t in self.trials if t.status in (PENDING, RUNNING, PAUSED)]

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        self.paused.append((trial, should_checkpoint))
        trial.status = PAUSED

    def stop_trial(self, trial: Trial) -> None:
        trial.status = TERMINATED

    def exploit(self, trial, donor_trial, new_config, new_tag) -> bool:
        if not self.has_checkpoint:
            return False
        self.exploits.append((trial, donor_trial, new_config, new_tag))
        trial.set_config(new_config)
        trial.set_experiment_tag(new_tag)
        trial.restore_from = f"checkpoint of {donor_trial.trial_id}"
        return True


class Uniform:
    """A stand-in for a tune search domain: anything with ``.sample()``."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def sample(self, config=None, size=1, random_state=None):
        return random.uniform(self.low, self.high)


def population(sched, configs: List[Dict], **ctl_kw):
    trials = [
        Trial(
            trial_id=f"t{i}",
            config=dict(c),
            trainable_name="f",
            experiment_tag=f"{i}_lr={c.get('lr')}",
        )
        for i, c in enumerate(configs)
    ]
    ctl = FakeController(trials, **ctl_kw)
    for t in trials:
        sched.on_trial_add(ctl, t)
        t.status = RUNNING
    return trials, ctl


def res(t: float, loss: float) -> Dict:
    return {"training_iteration": int(t), "time_total_s": float(t), "loss": loss}


def pbt(**kw) -> PopulationBasedTraining:
    kw.setdefault(
        "hyperparam_mutations", {"lr": [0.001, 0.01, 0.1, 1.0], "momentum": Uniform(0.1, 0.9)}
    )
    kw.setdefault("perturbation_interval", 4)
    return PopulationBasedTraining(time_attr="training_iteration", metric="loss", mode="min", **kw)


CONFIGS = [
    {"lr": 0.01, "momentum": 0.5, "other": "a"},
    {"lr": 0.1, "momentum": 0.5, "other": "b"},
    {"lr": 0.001, "momentum": 0.5, "other": "c"},
    {"lr": 1.0, "momentum": 0.5, "other": "d"},
]


def reach_perturbation(sched, trials, ctl, losses, t=4):
    return [sched.on_trial_result(ctl, tr, res(t, loss)) for tr, loss in zip(trials, losses)]


def test_no_decision_between_perturbation_points():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    for step in (1, 2, 3):
        assert reach_perturbation(sched, trials, ctl, [1, 2, 3, 4], t=step) == [CONTINUE] * 4
    assert ctl.exploits == []


def test_a_bottom_trial_exploits_a_top_trial_with_a_mutated_config():
    random.seed(1)
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    # t2 (best) reports after the others so that it is top when it is ranked.
    decisions = reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    assert decisions == [CONTINUE, CONTINUE, CONTINUE, PAUSE]
    ((trial, donor, new_config, new_tag),) = ctl.exploits
    assert trial is trials[3] and donor is trials[2]
    assert new_config["lr"] in (0.001, 0.01, 0.1, 1.0)
    assert new_config["lr"] in (0.001, 0.01)  # a neighbour of the donor's 0.001, or resampled
    assert new_config["other"] == "c"  # unmutated keys come from the donor
    assert new_config["momentum"] != 0.5
    assert new_tag.startswith("3_lr=1.0@perturbed[")
    assert "lr=" in new_tag and "momentum=" in new_tag
    assert trials[3].restore_from == "checkpoint of t2"


def test_a_perturbed_value_is_scaled_by_a_factor_or_resampled_within_the_domain():
    random.seed(0)
    sched = pbt(
        hyperparam_mutations={"momentum": Uniform(0.1, 0.9), "layers": lambda: 3},
        resample_probability=0.0,
        perturbation_factors=(2.0, 0.5),
    )
    configs = [dict(c, layers=4) for c in CONFIGS]
    trials, ctl = population(sched, configs)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    new_config = ctl.exploits[0][2]
    assert new_config["momentum"] in (1.0, 0.25)
    assert new_config["layers"] in (8, 2) and isinstance(new_config["layers"], int)

    sched = pbt(hyperparam_mutations={"momentum": Uniform(0.1, 0.9)}, resample_probability=1.0)
    trials, ctl = population(sched, CONFIGS)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    assert 0.1 <= ctl.exploits[0][2]["momentum"] <= 0.9


def test_nested_mutations_perturb_nested_config():
    random.seed(3)
    sched = pbt(hyperparam_mutations={"opt": {"lr": [0.1, 0.2, 0.3]}})
    configs = [{"opt": {"lr": 0.2, "beta": k}} for k in range(4)]
    trials, ctl = population(sched, configs)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    new_config = ctl.exploits[0][2]
    assert new_config["opt"]["lr"] in (0.1, 0.2, 0.3) and new_config["opt"]["beta"] == 2


def test_custom_explore_fn_runs_after_the_mutations():
    sched = pbt(custom_explore_fn=lambda c: dict(c, explored=True))
    trials, ctl = population(sched, CONFIGS)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    assert ctl.exploits[0][2]["explored"] is True


def test_exploit_carries_over_the_donor_clock_and_is_logged():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0])
    state = sched._trial_state[trials[3]]
    assert state.last_perturbation_time == 4 and state.last_train_time == 4
    assert sched._num_perturbations == 1
    ((trial_id, donor_id, policy),) = sched.policy_log
    assert (trial_id, donor_id) == ("t3", "t2") and policy[4] == trials[2].config


def test_no_exploit_when_the_donor_was_not_top_at_its_own_perturbation():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    # t2 reports first: alone, it is not ranked into the top quantile, so it has no checkpoint.
    order = [2, 0, 1, 3]
    losses = {0: 3.0, 1: 2.0, 2: 1.0, 3: 4.0}
    decisions = [sched.on_trial_result(ctl, trials[i], res(4, losses[i])) for i in order]
    assert ctl.exploits == [] and decisions == [CONTINUE] * 4


def test_no_exploit_when_the_controller_has_no_checkpoint_to_clone():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS, has_checkpoint=False)
    assert reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0]) == [CONTINUE] * 4
    assert sched._num_perturbations == 0 and trials[3].config == CONFIGS[3]


def test_trials_yield_to_waiting_trials_at_perturbation_points():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS + [dict(CONFIGS[0])])
    trials[4].status = PENDING
    assert sched.on_trial_result(ctl, trials[0], res(4, 1.0)) == PAUSE


def test_choose_trial_to_run_prefers_the_least_trained_waiting_trial():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    for t, time in zip(trials, (8, 4, 12, 4)):
        sched.on_trial_result(ctl, t, res(time, 1.0))
    trials[0].status = trials[2].status = PAUSED
    assert sched.choose_trial_to_run(ctl) is trials[0]
    trials[3].status = PAUSED
    assert sched.choose_trial_to_run(ctl) is trials[3]


def test_burn_in_period_delays_the_first_perturbation():
    sched = pbt(burn_in_period=8)
    trials, ctl = population(sched, CONFIGS)
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0], t=4)
    assert ctl.exploits == []
    reach_perturbation(sched, trials, ctl, [3.0, 2.0, 1.0, 4.0], t=8)
    assert len(ctl.exploits) == 1


def test_synchronous_pbt_pauses_everyone_and_exploits_at_the_sync_point():
    random.seed(0)
    sched = pbt(synch=True)
    trials, ctl = population(sched, CONFIGS)
    decisions = []
    for tr, loss in zip(trials, [3.0, 2.0, 1.0, 4.0]):
        decisions.append(sched.on_trial_result(ctl, tr, res(4, loss)))
        tr.status = PAUSED
    assert decisions == [PAUSE] * 4
    ((trial, donor, _, _),) = ctl.exploits
    assert trial is trials[3] and donor is trials[2]
    assert sched._next_perturbation_sync == 8
    # all are now at the sync point; nobody below the next one is waiting -> all eligible again
    assert sched.choose_trial_to_run(ctl) is trials[0]


def test_synchronous_pbt_waits_for_the_slowest_trial():
    sched = pbt(synch=True)
    trials, ctl = population(sched, CONFIGS)
    for tr, loss in zip(trials[:3], [3.0, 2.0, 1.0]):
        assert sched.on_trial_result(ctl, tr, res(4, loss)) == PAUSE
        tr.status = PAUSED
    assert ctl.exploits == []
    assert sched.choose_trial_to_run(ctl) is None  # t3 is RUNNING; paused ones wait for it


# --- bad input -----------------------------------------------------------------------------


def test_a_mutation_key_missing_from_the_config_is_named():
    sched = pbt(hyperparam_mutations={"learning_rate": [0.1, 0.2]})
    with pytest.raises(ValueError, match="`learning_rate` is not in the trial's config.*'lr'"):
        population(sched, CONFIGS)


def test_a_nested_mutation_over_a_scalar_config_value_is_named():
    sched = pbt(hyperparam_mutations={"lr": {"inner": [1, 2]}})
    with pytest.raises(ValueError, match="`lr` is 0.01, not a dict"):
        population(sched, CONFIGS)


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(hyperparam_mutations={}), TuneError, "`hyperparam_mutations` or `custom_explore_fn`"),
        (dict(quantile_fraction=0.6), ValueError, "`quantile_fraction`"),
        (dict(perturbation_interval=0), ValueError, "`perturbation_interval`"),
        (dict(hyperparam_mutations={"lr": 0.1}), TypeError, r"hyperparam_mutations\['lr'\]"),
        (dict(mode="minimum"), ValueError, "`mode` must be 'min' or 'max'"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter(kw, exc, words):
    kw.setdefault("hyperparam_mutations", {"lr": [0.1]})
    kw.setdefault("mode", "min")
    with pytest.raises(exc, match=words):
        PopulationBasedTraining(metric="loss", **kw)


def test_a_metric_never_reported_is_named():
    sched = pbt()
    trials, ctl = population(sched, CONFIGS)
    with pytest.raises(ValueError, match=r"`loss`.*Reported keys: \['acc'"):
        sched.on_trial_result(ctl, trials[0], {"acc": 1.0, "training_iteration": 1})


def test_require_attrs_false_skips_results_without_the_metric():
    sched = pbt(require_attrs=False)
    trials, ctl = population(sched, CONFIGS)
    assert sched.on_trial_result(ctl, trials[0], {"acc": 1.0, "training_iteration": 4}) == CONTINUE
