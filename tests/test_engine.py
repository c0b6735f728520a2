"""The engine end to end through the public API: Tuner.fit / tune.run on worker processes,
Ray's on-disk layout, retries from checkpoints, dead workers, class trainables."""

import json
import os
import signal
import tempfile

import pandas as pd
import pytest

from tunelib import train, tune
from tunelib.error import TuneError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _save(d, **state):
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(state, f)


def _load(checkpoint):
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            return json.load(f)


def checkpointing_fn(config):
    """Counts to 20, checkpointing every step; fails once at step `fail_at` when asked."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        start = _load(ckpt)["step"]
    for step in range(start, 20):
        if step == config.get("fail_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            if config.get("kill"):
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure")
        with tempfile.TemporaryDirectory() as d:
            _save(d, step=step + 1)
            tune.report({"loss": config["lr"] / (step + 1), "step": step + 1},
                        checkpoint=tune.Checkpoint.from_directory(d))


def test_tuner_grid_and_samples_write_rays_layout(storage_dir):
    tuner = tune.Tuner(
        checkpointing_fn,
        param_space={"lr": tune.grid_search([0.1, 0.01]), "wd": tune.uniform(0, 1e-3)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2,
                                    max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="grid", storage_path=storage_dir, stop={"training_iteration": 5},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    grid = tuner.fit()
    assert len(grid) == 4 and grid.num_errors == 0 and grid.num_terminated == 4
    assert sorted(r.config["lr"] for r in grid) == [0.01, 0.01, 0.1, 0.1]
    best = grid.get_best_result()
    assert best.config["lr"] == 0.01
    assert best.metrics["training_iteration"] == 5
    assert list(best.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5]
    # Ray's files, Ray's names
    trial_dir = best.path
    names = set(os.listdir(trial_dir))
    assert {"params.json", "params.pkl", "result.json", "progress.csv"} <= names
    assert sorted(n for n in names if n.startswith("checkpoint_")) == [
        "checkpoint_000003", "checkpoint_000004"]
    assert os.path.basename(trial_dir).startswith("checkpointing_fn_")
    assert "_lr=0.0100,wd=" in os.path.basename(trial_dir)
    with open(os.path.join(trial_dir, "params.json")) as f:
        assert json.load(f)["lr"] == 0.01
    header = pd.read_csv(os.path.join(trial_dir, "progress.csv")).columns
    assert "config/lr" not in header and "training_iteration" in header
    assert _load(best.checkpoint) == {"step": 5}
    exp = os.path.join(storage_dir, "grid")
    assert any(n.startswith("experiment_state-") for n in os.listdir(exp))


def test_retry_restores_latest_checkpoint_and_continues_iterations(storage_dir, tmp_path):
    grid = tune.Tuner(
        checkpointing_fn,
        param_space={"lr": 0.1, "fail_at": 7, "marker": str(tmp_path / "failed")},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name="retry", storage_path=storage_dir,
                                  stop={"training_iteration": 10},
                                  failure_config=tune.FailureConfig(max_failures=2)),
    ).fit()
    result = grid[0]
    assert result.error is None
    df = result.metrics_dataframe
    # 7 iterations, the failure, then 8..10 restored from checkpoint_000006 (step 7)
    assert list(df["training_iteration"]) == list(range(1, 11))
    assert list(df["step"]) == list(range(1, 11))
    assert list(df["iterations_since_restore"])[-3:] == [1, 2, 3]
    assert df["time_total_s"].is_monotonic_increasing
    with open(os.path.join(result.path, "error.txt")) as f:
        assert "injected failure" in f.read()


def test_killed_worker_is_a_failure_that_is_retried(storage_dir, tmp_path):
    grid = tune.Tuner(
        checkpointing_fn,
        param_space={"lr": 0.1, "fail_at": 3, "kill": True, "marker": str(tmp_path / "killed")},
        run_config=tune.RunConfig(name="killed", storage_path=storage_dir,
                                  stop={"training_iteration": 6},
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    result = grid[0]
    assert result.error is None
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3, 4, 5, 6]
    with open(os.path.join(result.path, "error.txt")) as f:
        assert "died" in f.read()


def always_fails(config):
    tune.report({"loss": 1.0})
    if config["fail"]:
        raise ValueError(f"bad config {config['fail']}")
    tune.report({"loss": 0.5})


def test_failed_trial_keeps_its_error_and_others_finish(storage_dir):
    grid = tune.Tuner(
        always_fails,
        param_space={"fail": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name="errors", storage_path=storage_dir,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 1
    failed = next(r for r in grid if r.config["fail"])
    assert isinstance(failed.error, ValueError) and "bad config 1" in str(failed.error)
    with open(os.path.join(failed.path, "error.txt")) as f:
        text = f.read()
    assert text.count("Failure #") == 2 and "ValueError" in text
    assert grid.get_best_result().config == {"fail": 0}


def test_tune_run_returns_experiment_analysis(storage_dir):
    analysis = tune.run(
        checkpointing_fn,
        config={"lr": tune.grid_search([0.1, 0.2])},
        metric="loss", mode="min", stop={"training_iteration": 4},
        storage_path=storage_dir, name="legacy", resources_per_trial={"cpu": 1},
        keep_checkpoints_num=1, checkpoint_score_attr="min-loss", verbose=0,
    )
    assert analysis.best_config == {"lr": 0.1}
    assert analysis.best_result["training_iteration"] == 4
    assert _load(analysis.best_checkpoint) == {"step": 4}
    assert len(analysis.results_df) == 2
    assert sorted(len(df) for df in analysis.trial_dataframes.values()) == [4, 4]
    assert set(analysis.dataframe()["config/lr"]) == {0.1, 0.2}


def test_tune_run_raises_on_failed_trial(storage_dir):
    with pytest.raises(TuneError, match="did not complete"):
        tune.run(always_fails, config={"fail": 1}, storage_path=storage_dir, name="raise",
                 verbose=0)


def returns_final(config):
    train.report({"score": 1})
    return {"score": 2}


def test_function_may_return_final_metrics_and_use_train_report(storage_dir):
    grid = tune.Tuner(returns_final, run_config=tune.RunConfig(storage_path=storage_dir,
                                                               name="ret")).fit()
    assert list(grid[0].metrics_dataframe["score"]) == [1, 2]


class Counter(tune.Trainable):
    resets = 0

    def setup(self, config):
        self.total = 0
        self.seen = (self.trial_id, self.trial_name, self.logdir, self.get_config())

    def step(self):
        self.total += self.config["inc"]
        return {"total": self.total, "iteration_before": self.iteration}

    def save_checkpoint(self, checkpoint_dir):
        _save(checkpoint_dir, total=self.total)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.total = json.load(f)["total"]

    def reset_config(self, new_config):
        self.total = 0
        return True


def test_class_trainable_checkpoints_by_frequency_and_at_end(storage_dir):
    grid = tune.Tuner(
        Counter,
        param_space={"inc": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric="total", mode="max", reuse_actors=True,
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name="cls", storage_path=storage_dir, stop={"training_iteration": 5},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2,
                                                    checkpoint_at_end=True),
        ),
    ).fit()
    assert grid.num_errors == 0
    best = grid.get_best_result()
    assert best.config == {"inc": 2} and best.metrics["total"] == 10
    assert list(best.metrics_dataframe["iteration_before"]) == [0, 1, 2, 3, 4]
    ckpts = sorted(n for n in os.listdir(best.path) if n.startswith("checkpoint_"))
    assert ckpts == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert _load(best.checkpoint) == {"total": 10}
    assert os.path.basename(best.path).startswith("Counter_")


def test_memory_storage(tmp_path):
    grid = tune.Tuner(
        checkpointing_fn,
        param_space={"lr": 0.5},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name="mem", storage_path="memory://tunelib-test",
                                  stop={"training_iteration": 3}),
    ).fit()
    result = grid[0]
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3]
    assert _load(result.checkpoint) == {"step": 3}
