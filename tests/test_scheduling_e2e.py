"""Schedulers and stoppers driving real experiments: early stopping, pause and resume from
checkpoints, population-based training, stop conditions and time budgets."""

import json
import os
import tempfile
import time

import pytest

from tunelib import tune
from tunelib.schedulers import ASHAScheduler, HyperBandScheduler, PopulationBasedTraining
from tunelib.stopper import MaximumIterationStopper

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def curve(config):
    """Deterministic learning curves: a lower lr is better at every step."""
    for i in range(config["iters"]):
        tune.report({"loss": config["lr"] * 10.0 / (i + 1) + config["lr"]})


def test_asha_stops_the_bad_trials_early(storage_dir):
    lrs = [0.001 * (2 ** k) for k in range(9)]
    grid = tune.Tuner(
        curve,
        param_space={"lr": tune.grid_search(lrs), "iters": 27},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", max_concurrent_trials=2,
            scheduler=ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(name="asha", storage_path=storage_dir, verbose=0),
    ).fit()
    iters = {r.config["lr"]: len(r.metrics_dataframe) for r in grid}
    assert grid.num_errors == 0
    assert iters[min(lrs)] == 27                 # the best one runs to max_t
    assert iters[max(lrs)] < 27                  # the worst one is stopped at a rung
    assert sum(iters.values()) < 27 * len(lrs) * 0.7
    assert grid.get_best_result().config["lr"] == min(lrs)


def resumable(config):
    """Checkpoints every iteration; resumes from the latest checkpoint."""
    start, total = 0, 0.0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                state = json.load(f)
        start, total = state["i"], state["total"]
    for i in range(start, 30):
        total += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"i": i + 1, "total": total, "lr": config["lr"]}, f)
            tune.report({"score": total, "i": i + 1, "lr_used": config["lr"]},
                        checkpoint=tune.Checkpoint.from_directory(d))


def test_hyperband_pauses_and_resumes_from_checkpoints(storage_dir):
    grid = tune.Tuner(
        resumable,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])},
        # no max_concurrent_trials: as in Ray, it would cap the live (created) trials and
        # the synchronous bracket would never see its whole population
        tune_config=tune.TuneConfig(
            metric="score", mode="max",
            scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
        ),
        run_config=tune.RunConfig(name="hb", storage_path=storage_dir, verbose=0),
    ).fit()
    assert grid.num_errors == 0
    resumed = 0
    for result in grid:
        df = result.metrics_dataframe
        # iteration numbers continue across pauses; the trainable's own counter agrees
        assert list(df["training_iteration"]) == list(range(1, len(df) + 1))
        assert list(df["i"]) == list(df["training_iteration"])
        restarts = int((df["iterations_since_restore"] == 1).sum())
        resumed += restarts > 1
    assert resumed >= 1  # at least one trial was paused at a rung and resumed
    best = grid.get_best_result()
    assert best.config["lr"] == 0.6 and best.metrics["training_iteration"] == 9


def test_pbt_exploits_a_donor_checkpoint_with_a_mutated_config(storage_dir):
    mutations = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=3,
        hyperparam_mutations={"lr": mutations},
        quantile_fraction=0.5, resample_probability=1.0,
    )
    grid = tune.Tuner(
        resumable,
        param_space={"lr": tune.grid_search([0.1, 1.0, 0.2, 0.9])},
        # no max_concurrent_trials: it would cap the live population at 2 (as in Ray)
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(name="pbt", storage_path=storage_dir, verbose=0,
                                  stop={"training_iteration": 18}),
    ).fit()
    assert grid.num_errors == 0
    exploited = 0
    for result in grid:
        df = result.metrics_dataframe
        # after an exploit the count continues from the donor's checkpoint (as in Ray)
        assert df["training_iteration"].iloc[-1] == 18
        for k in range(1, len(df)):
            if df["iterations_since_restore"].iloc[k] != 1:
                continue
            # restarted mid-trial from a checkpoint; an exploit restored someone else's
            # state, so its score does not continue this trial's own sum
            own_next = df["score"].iloc[k - 1] + df["lr_used"].iloc[k]
            if abs(df["score"].iloc[k] - own_next) > 1e-9:
                exploited += 1
                assert df["lr_used"].iloc[k] in mutations
    assert exploited >= 1
    # Ray's policy logs: one line per exploit, [tag, donor tag, it, donor it, donor cfg, cfg]
    exp_dir = os.path.join(storage_dir, "pbt")
    with open(os.path.join(exp_dir, "pbt_global.txt")) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) >= exploited and all(len(line) == 6 for line in lines)
    assert any(n.startswith("pbt_policy_") for n in os.listdir(exp_dir))


def slow_reporter(config):
    for i in range(1000):
        time.sleep(0.05)
        tune.report({"loss": 1.0 / (i + 1), "i": i})


@pytest.mark.parametrize("stop, expected", [
    ({"training_iteration": 3}, 3),
    ({"i": 4}, 5),
    (lambda trial_id, result: result["training_iteration"] >= 2, 2),
    (MaximumIterationStopper(max_iter=4), 4),
])
def test_stop_conditions(storage_dir, stop, expected):
    grid = tune.Tuner(slow_reporter, run_config=tune.RunConfig(
        name="stop", storage_path=storage_dir, stop=stop, verbose=0)).fit()
    assert len(grid[0].metrics_dataframe) == expected


def test_time_budget_ends_the_experiment(storage_dir):
    start = time.time()
    grid = tune.Tuner(
        slow_reporter, param_space={"x": tune.grid_search([1, 2, 3, 4, 5, 6])},
        tune_config=tune.TuneConfig(time_budget_s=2.0),
        run_config=tune.RunConfig(name="budget", storage_path=storage_dir, verbose=0),
    ).fit()
    assert time.time() - start < 60
    assert grid.num_errors == 0
    assert all(r.metrics_dataframe is None or len(r.metrics_dataframe) < 1000 for r in grid)


def test_median_stopping_rule_stops_trials_below_the_median(storage_dir):
    from tunelib.schedulers import MedianStoppingRule

    # the rule also pauses trials to let pending ones run (as Ray's does), so the trainable
    # checkpoints: a paused trial resumes where it was
    grid = tune.Tuner(
        resumable,
        param_space={"lr": tune.grid_search([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])},
        tune_config=tune.TuneConfig(
            metric="score", mode="max",
            scheduler=MedianStoppingRule(time_attr="training_iteration", grace_period=2,
                                         min_samples_required=2),
        ),
        run_config=tune.RunConfig(name="median", storage_path=storage_dir, verbose=0,
                                  stop={"training_iteration": 10}),
    ).fit()
    iters = {}
    for result in grid:
        df = result.metrics_dataframe
        assert list(df["training_iteration"]) == list(range(1, len(df) + 1))
        iters[result.config["lr"]] = len(df)
    assert iters[0.6] == 10
    assert iters[0.1] < 10


def sleepy_curve(config):
    for i in range(3):
        time.sleep(0.2)
        tune.report({"loss": config["lr"] / (i + 1)})


def test_unlimited_samples_until_the_time_budget(storage_dir):
    grid = tune.Tuner(
        sleepy_curve, param_space={"lr": tune.uniform(0.01, 1.0)},
        tune_config=tune.TuneConfig(num_samples=-1, time_budget_s=6.0),
        run_config=tune.RunConfig(name="forever", storage_path=storage_dir, verbose=0),
    ).fit()
    finished = [r for r in grid if r.metrics_dataframe is not None and len(r.metrics_dataframe) == 3]
    assert len(finished) >= 2 and grid.num_errors == 0
    assert len({r.config["lr"] for r in finished}) == len(finished)
