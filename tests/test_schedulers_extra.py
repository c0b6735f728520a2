"""The schedulers that were missing: PopulationBasedTrainingReplay, ResourceChangingScheduler
(with DistributeResources), HyperBandForBOHB and PB2 — pure logic against ``FakeController``,
save/restore, Ray 2.60's own answers, and one end-to-end run each through the public API.

The ``RAY_*`` expected values are the output of
``tests/ray_reference/optional_searchers.py ray distribute_resources pb2_explore
pbt_replay_policy`` run with Ray 2.60.0 (library versions listed in that script); with
``TUNELIB_RAY_PYTHON`` set it is also run live.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_schedulers import FakeController, added, make_trials, result

from tunelib import tune
from tunelib.schedulers import (
    FIFOScheduler,
    HyperBandForBOHB,
    PopulationBasedTrainingReplay,
    ResourceChangingScheduler,
    TrialScheduler,
    create_scheduler,
)
from tunelib.trial import PAUSED, RUNNING

REFERENCE = Path(__file__).parent / "ray_reference" / "optional_searchers.py"
sys.path.insert(0, str(REFERENCE.parent))
import optional_searchers as protocols  # noqa: E402

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP

RAY_DISTRIBUTE_RESOURCES = [[{'CPU': 4.0}], [{'CPU': 3.0}], [{'CPU': 1.0}, {'CPU': 1.0}, {'CPU': 1.0}], [{'CPU': 5.0}], [{'CPU': 1.0}], [{'CPU': 1.0}]]
RAY_PB2_EXPLORE = {'config': {'lr': 0.10000000149011612, 'mom': 0.9900000095367432, 'other': 1.0}, 'rows': 21}
RAY_PBT_REPLAY_POLICY = {'config': {'lr': 0.03, 'bs': 16}, 'policy': [[4, {'lr': 0.036, 'bs': 16}], [6, {'lr': 0.012, 'bs': 32}], [9, {'lr': 0.0096, 'bs': 64}]], 'tag': 'replay_pbt_policy_t3.txt'}
RAY = {"distribute_resources": RAY_DISTRIBUTE_RESOURCES, "pb2_explore": RAY_PB2_EXPLORE,
       "pbt_replay_policy": RAY_PBT_REPLAY_POLICY}


@pytest.fixture(autouse=True)
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def write_policy(path: Path, lines) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def checkpointing(report_extra):
    """A function trainable that checkpoints every iteration and resumes from it."""

    def train(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as d:
                start = int(Path(d, "it").read_text())
        for it in range(start + 1, 7):
            d = Path(tune.get_context().get_trial_dir(), f"ck{it}")
            d.mkdir(parents=True, exist_ok=True)
            (d / "it").write_text(str(it))
            tune.report({"loss": config.get("lr", 0.1) / it, **report_extra(config)},
                        checkpoint=tune.Checkpoint.from_directory(str(d)))

    return train


def fit(trainable, storage, scheduler, param_space, num_samples=1, **tune_config):
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                    num_samples=num_samples, **tune_config),
        run_config=tune.RunConfig(name="exp", storage_path=str(storage), verbose=0,
                                  stop={"training_iteration": 6}),
    ).fit()


@pytest.mark.skipif(not os.environ.get("TUNELIB_RAY_PYTHON"), reason="set TUNELIB_RAY_PYTHON")
def test_recorded_ray_values_are_what_ray_computes_now():
    out = subprocess.run([os.environ["TUNELIB_RAY_PYTHON"], str(REFERENCE), "ray", *RAY],
                         capture_output=True, text=True, check=True, timeout=600)
    assert json.loads(out.stdout) == RAY


def test_create_scheduler_knows_rays_names():
    pytest.importorskip("sklearn")
    assert type(create_scheduler("hb_bohb", metric="loss", mode="min")) is HyperBandForBOHB
    assert type(create_scheduler("resource_changing")) is ResourceChangingScheduler
    pb2 = create_scheduler("pb2", metric="loss", mode="min", hyperparam_bounds={"lr": [0, 1]})
    assert type(pb2).__name__ == "PB2"


# ---------------------------------------------------------------- PopulationBasedTrainingReplay


def test_pbt_replay_reads_the_policy_as_ray_does():
    assert protocols.pbt_replay_policy("tunelib") == RAY_PBT_REPLAY_POLICY


def test_pbt_replay_pauses_and_swaps_the_config_at_each_recorded_step(tmp_path):
    replay = PopulationBasedTrainingReplay(
        write_policy(tmp_path / "pbt_policy_t3.txt", protocols.POLICY_LINES))
    (trial,), ctl = added(replay, 1)
    assert trial.config == {"lr": 0.03, "bs": 16}
    assert replay.on_trial_result(ctl, trial, result(3, loss=1.0)) == CONTINUE
    assert replay.on_trial_result(ctl, trial, result(4, loss=1.0)) == PAUSE
    assert trial.config == {"lr": 0.036, "bs": 16}
    assert trial.experiment_tag == "replay_pbt_policy_t3.txt@perturbed[bs=16,lr=0.0360]"
    trial.status = PAUSED
    assert replay.choose_trial_to_run(ctl) is trial


def test_pbt_replay_takes_a_single_trial(tmp_path):
    replay = PopulationBasedTrainingReplay(
        write_policy(tmp_path / "p.txt", protocols.POLICY_LINES))
    with pytest.raises(ValueError, match="More than one trial added to PBT replay run"):
        added(replay, 2)
    with pytest.raises(ValueError, match="Policy file not found"):
        PopulationBasedTrainingReplay(str(tmp_path / "missing.txt"))


def test_pbt_replay_save_restore_round_trip(tmp_path):
    replay = PopulationBasedTrainingReplay(
        write_policy(tmp_path / "p.txt", protocols.POLICY_LINES))
    (trial,), ctl = added(replay, 1)
    replay.on_trial_result(ctl, trial, result(4, loss=1.0))
    replay.save(str(tmp_path / "s.pkl"))
    restored = PopulationBasedTrainingReplay(str(tmp_path / "p.txt"))
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored._next_policy == (6, {"lr": 0.012, "bs": 32})
    assert restored.debug_string() == replay.debug_string()


def test_pbt_replay_trains_one_trial_along_the_schedule(tmp_path):
    policy = write_policy(tmp_path / "pbt_policy_t3.txt", protocols.POLICY_LINES[:2])
    grid = fit(checkpointing(lambda c: {"lr": c["lr"], "bs": c["bs"]}), tmp_path / "out",
               PopulationBasedTrainingReplay(policy), param_space={})
    assert grid.num_errors == 0
    history = grid[0].metrics_dataframe
    assert list(history["training_iteration"]) == [1, 2, 3, 4, 5, 6]
    # starts from the first line's config; at iteration 4 it is paused and resumed with
    # the recorded one (the change at 6 comes with the last result)
    assert list(history["lr"]) == [0.03, 0.03, 0.03, 0.03, 0.036, 0.036]


# ---------------------------------------------------------------- ResourceChangingScheduler


def test_distribute_resources_answers_as_rays():
    assert protocols.distribute_resources("tunelib") == RAY_DISTRIBUTE_RESOURCES


def two_cpus_from_iteration_2(controller, trial, result, scheduler):
    return {"CPU": 2} if result["training_iteration"] >= 2 else None


def test_resource_change_pauses_the_trial_and_applies_when_it_has_stopped():
    rcs = ResourceChangingScheduler(FIFOScheduler(), two_cpus_from_iteration_2)
    (a, b), ctl = added(rcs, 2)
    assert rcs.on_trial_result(ctl, a, result(1, loss=1.0)) == CONTINUE
    assert rcs.on_trial_result(ctl, a, result(2, loss=1.0)) == PAUSE
    assert a.resources == {"cpu": 1.0}  # not while it is running
    a.status = PAUSED
    with pytest.warns(UserWarning, match="does not change how many trials run concurrently"):
        assert rcs.choose_trial_to_run(ctl) is a
    assert a.resources == {"cpu": 2.0}
    assert rcs.on_trial_result(ctl, a, result(3, loss=1.0)) == CONTINUE  # already has them
    assert rcs.on_trial_result(ctl, b, result(2, loss=1.0)) == PAUSE
    b.status = PAUSED
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        rcs.choose_trial_to_run(ctl)
    assert b.resources == {"cpu": 2.0}


def test_resource_changing_scheduler_keeps_the_base_schedulers_stop():
    class StopAt2(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return STOP if result["training_iteration"] >= 2 else CONTINUE

    rcs = ResourceChangingScheduler(StopAt2(), two_cpus_from_iteration_2)
    (a,), ctl = added(rcs, 1)
    assert rcs.on_trial_result(ctl, a, result(2, loss=1.0)) == STOP


def test_resource_changing_scheduler_refuses_reuse_actors_and_varying_base():
    rcs = ResourceChangingScheduler(FIFOScheduler(), two_cpus_from_iteration_2)
    trials = make_trials(2)
    trials[1].resources = {"cpu": 3.0}
    ctl = FakeController(trials, rcs)
    rcs.on_trial_add(ctl, trials[0])
    with pytest.raises(RuntimeError, match="varying base resources"):
        rcs.on_trial_add(ctl, trials[1])
    ctl._reuse_actors = True
    with pytest.raises(ValueError, match="reuse_actors=False"):
        rcs.choose_trial_to_run(ctl)


def test_resource_changing_scheduler_save_restore_round_trip(tmp_path):
    rcs = ResourceChangingScheduler(FIFOScheduler(), two_cpus_from_iteration_2)
    (a,), ctl = added(rcs, 1)
    rcs.on_trial_result(ctl, a, result(2, loss=1.0))
    a.status = PAUSED
    with pytest.warns(UserWarning):
        rcs.choose_trial_to_run(ctl)
    rcs.save(str(tmp_path / "s.pkl"))
    restored = ResourceChangingScheduler(FIFOScheduler(), two_cpus_from_iteration_2)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored._reallocated_trial_ids == {a.trial_id}
    assert restored.base_trial_resources.bundles == [{"CPU": 1.0}]
    assert list(restored._trial_bundles.values()) == [[{"CPU": 2}]]


def test_resource_changing_scheduler_gives_the_restarted_trial_its_new_resources(tmp_path):
    rcs = ResourceChangingScheduler(FIFOScheduler(), two_cpus_from_iteration_2)
    with pytest.warns(UserWarning, match="ResourceChangingScheduler changed the resources"):
        grid = fit(checkpointing(lambda c: {"cpus": tune.get_context().get_trial_resources()
                                            ["cpu"]}),
                   tmp_path, rcs, param_space={"lr": 0.1})
    assert grid.num_errors == 0
    history = grid[0].metrics_dataframe
    assert list(history["training_iteration"]) == [1, 2, 3, 4, 5, 6]
    assert list(history["cpus"]) == [1, 1, 2, 2, 2, 2]


# ---------------------------------------------------------------- HyperBandForBOHB


def test_hyperband_for_bohb_fills_the_largest_bracket_first():
    hb = HyperBandForBOHB(metric="loss", mode="min", max_t=9, reduction_factor=3)
    trials, ctl = added(hb, 10)
    bracket, _ = hb._trial_info[trials[0]]
    assert bracket._n0 == 9 and bracket._r0 == 1  # s = s_max: the most trials, least budget
    assert hb._trial_info[trials[9]][0] is not bracket


def test_hyperband_for_bohb_pauses_at_the_milestone_even_in_an_unfilled_bracket():
    hb = HyperBandForBOHB(metric="loss", mode="min", max_t=9, reduction_factor=3)
    trials, ctl = added(hb, 4)  # the first bracket holds 9; 3 go on from its first rung
    first = result(1, loss=0.5)
    assert hb.on_trial_result(ctl, trials[0], first) == PAUSE
    assert first["hyperband_info"] == {"budget": 1}
    trials[0].status = PAUSED
    for i, t in enumerate(trials[1:], 1):
        assert hb.on_trial_result(ctl, t, result(1, loss=float(i))) == PAUSE
        t.status = PAUSED
    # nothing runs: the bracket is processed; the worst trial stops, the others go on
    assert hb.choose_trial_to_run(ctl) is trials[0]
    assert ctl.stopped == [trials[3]]


class _Recorder:
    def __init__(self):
        self.calls = []

    def on_pause(self, trial_id):
        self.calls.append(("pause", trial_id))

    def on_unpause(self, trial_id):
        self.calls.append(("unpause", trial_id))


def test_hyperband_for_bohb_tells_the_searcher_about_pauses_and_promotions():
    hb = HyperBandForBOHB(metric="loss", mode="min", max_t=9, reduction_factor=3)
    trials = make_trials(9)
    ctl = FakeController(trials, hb)
    searcher = _Recorder()
    ctl.search_alg = type("SearchGenerator", (), {"searcher": searcher})()
    for t in trials:
        hb.on_trial_add(ctl, t)
        t.status = RUNNING
    for i, t in enumerate(trials):
        decision = hb.on_trial_result(ctl, t, result(1, loss=float(i)))
        if decision == PAUSE:
            t.status = PAUSED
    assert ("pause", trials[0].trial_id) in searcher.calls
    assert [c for c in searcher.calls if c[0] == "unpause"]


def test_hyperband_for_bohb_save_restore_round_trip(tmp_path):
    hb = HyperBandForBOHB(metric="loss", mode="min", max_t=9)
    added(hb, 3)
    hb.save(str(tmp_path / "s.pkl"))
    restored = HyperBandForBOHB(metric="loss", mode="min", max_t=9)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.debug_string() == hb.debug_string()


# ---------------------------------------------------------------- PB2


def IN_BOUNDS(lr: float) -> bool:
    # PB2's GP answers in float32, as Ray's: a bound may come back as 0.10000000149
    return 1e-3 - 1e-7 <= lr <= 1e-1 + 1e-7


def test_pb2_gp_step_chooses_rays_config():
    pytest.importorskip("sklearn")
    assert protocols.pb2_explore("tunelib") == RAY_PB2_EXPLORE


def test_pb2_validates_bounds():
    pytest.importorskip("sklearn")
    from tunelib.schedulers import PB2

    with pytest.raises(ValueError, match="list or tuple of size 2"):
        PB2(hyperparam_bounds={"lr": [0.1]})
    with pytest.raises(ValueError, match="low <= high"):
        PB2(hyperparam_bounds={"lr": [1, 0]})


def test_pb2_samples_missing_hyperparams_and_exploits_within_bounds():
    pytest.importorskip("sklearn")
    from tunelib.schedulers import PB2

    pb2 = PB2(time_attr="training_iteration", metric="loss", mode="min",
              perturbation_interval=2, hyperparam_bounds={"lr": [1e-3, 1e-1]})
    trials, ctl = added(pb2, 4, configs=[{"lr": 0.01}, {}, {"lr": 0.05}, {}])
    assert all(1e-3 <= t.config["lr"] <= 1e-1 for t in trials)
    ctl.exploit = lambda trial, donor, new_config, new_tag: bool(
        trial.set_config(new_config) or trial.set_experiment_tag(new_tag) or True)
    for it in range(1, 7):
        for i, t in enumerate(trials):
            t.status = RUNNING
            pb2.on_trial_result(ctl, t, result(it, loss=float(i) / it))
    assert pb2.policy_log  # bottom trials exploited top ones
    by_id = {t.trial_id: t for t in trials}
    for trial_id, _, _ in pb2.policy_log:
        trial = by_id[trial_id]
        assert IN_BOUNDS(trial.config["lr"])
        assert "@perturbed[lr=" in trial.experiment_tag


def test_pb2_save_restore_round_trip(tmp_path):
    pytest.importorskip("sklearn")
    from tunelib.schedulers import PB2

    pb2 = PB2(time_attr="training_iteration", metric="loss", mode="min",
              perturbation_interval=1, hyperparam_bounds={"lr": [1e-3, 1e-1]})
    trials, ctl = added(pb2, 2, configs=[{"lr": 0.01}, {"lr": 0.02}])
    for t in trials:
        pb2.on_trial_result(ctl, t, result(1, loss=1.0))
    pb2.save(str(tmp_path / "s.pkl"))
    restored = PB2(hyperparam_bounds={"lr": [0, 1]})
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.data.equals(pb2.data)
    assert restored._choice is not pb2._choice
    assert restored._custom_explore_fn.args[0] is restored._choice  # the GP hand-over is intact


def test_pb2_runs_an_experiment(tmp_path):
    pytest.importorskip("sklearn")
    from tunelib.schedulers import PB2

    pb2 = PB2(time_attr="training_iteration", perturbation_interval=2,
              hyperparam_bounds={"lr": [1e-3, 1e-1]})
    grid = fit(checkpointing(lambda c: {"lr": c["lr"]}), tmp_path, pb2,
               param_space={"lr": tune.uniform(1e-3, 1e-1)}, num_samples=4)
    assert len(grid) == 4 and grid.num_errors == 0
    assert all(IN_BOUNDS(r.config["lr"]) for r in grid)
    assert all(r.metrics["training_iteration"] == 6 for r in grid)
