"""Every bad input fails early with one clear message naming the argument."""

import os
import threading

import pytest

from tunelib import tune
from tunelib.error import TuneError


def ok_fn(config):
    tune.report({"loss": 1.0})


def test_misspelled_keyword_names_it_and_suggests():
    with pytest.raises(TypeError, match=r"num_sample.*did you mean 'num_samples'"):
        tune.run(ok_fn, num_sample=2)
    with pytest.raises(TypeError, match=r"metrc.*did you mean 'metric'"):
        tune.TuneConfig(metrc="loss")


@pytest.mark.parametrize("make", [
    lambda: tune.TuneConfig(mode="minimum"),
    lambda: tune.run(ok_fn, mode="best", verbose=0),
])
def test_mode_must_be_min_or_max(make):
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max', got"):
        make()


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": 0}, "num_samples"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
    ({"time_budget_s": -1}, "time_budget_s"),
])
def test_tune_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune.TuneConfig(**kwargs)


def test_failure_and_checkpoint_config_values():
    with pytest.raises(ValueError, match="max_failures"):
        tune.FailureConfig(max_failures=-2)
    with pytest.raises(ValueError, match="num_to_keep"):
        tune.CheckpointConfig(num_to_keep=0)
    with pytest.raises(ValueError, match="checkpoint_score_order"):
        tune.CheckpointConfig(checkpoint_score_order="up")


def test_trainable_that_cannot_be_pickled(storage_dir):
    lock = threading.Lock()

    def uses_lock(config):
        with lock:
            tune.report({"x": 1})

    with pytest.raises(TypeError, match=r"`trainable` uses_lock cannot be pickled"):
        tune.Tuner(uses_lock, run_config=tune.RunConfig(storage_path=storage_dir)).fit()


def test_trainable_with_wrong_signature(storage_dir):
    def no_args():
        pass

    with pytest.raises(TypeError, match=r"must accept the config dict"):
        tune.Tuner(no_args, run_config=tune.RunConfig(storage_path=storage_dir)).fit()
    with pytest.raises(TypeError, match=r"must be a function .* or a tune.Trainable"):
        tune.Tuner(42, run_config=tune.RunConfig(storage_path=storage_dir)).fit()


def test_storage_path_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"`storage_path` .* is not writable"):
        tune.Tuner(ok_fn, run_config=tune.RunConfig(storage_path=str(blocker / "sub"))).fit()


def test_resources_beyond_this_machine(storage_dir):
    with pytest.raises(ValueError, match=r"`resources_per_trial` asks for 1000 CPUs"):
        tune.run(ok_fn, resources_per_trial={"cpu": 1000}, storage_path=storage_dir, verbose=0)
    with pytest.raises(ValueError, match=r"`resources_per_trial\['cpu'\]`"):
        tune.run(ok_fn, resources_per_trial={"cpu": -1}, storage_path=storage_dir, verbose=0)


def test_gpu_requested_without_gpu(storage_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match=r"GPU\(s\) per trial but no GPU is visible"):
        tune.run(ok_fn, resources_per_trial={"cpu": 1, "gpu": 1}, storage_path=storage_dir,
                 verbose=0)


def test_report_outside_a_trial_warns_and_returns_as_ray_does():
    """Ray 2.60: tune.report / tune.get_checkpoint outside a trial warn once ("... is meant
    to only be called inside a function that is executed by a Tuner or Trainer") and return
    None."""
    with pytest.warns(UserWarning, match="`report` is meant to only be called inside"):
        assert tune.report({"x": 1}) is None
    assert tune.get_checkpoint() is None


def forgets_metric(config):
    tune.report({"acc": 0.5})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_metric_never_reported(storage_dir):
    with pytest.raises(TuneError, match=r"did not include the metric 'loss'.*\['acc'"):
        tune.Tuner(forgets_metric, tune_config=tune.TuneConfig(metric="loss", mode="min"),
                   run_config=tune.RunConfig(storage_path=storage_dir, verbose=0)).fit()


def reports_gpu(config):
    tune.report({"devices": os.environ.get("CUDA_VISIBLE_DEVICES")})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_gpus_are_counted_and_assigned(storage_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    analysis = tune.run(reports_gpu, config={"i": tune.grid_search([0, 1, 2, 3])},
                    resources_per_trial={"cpu": 0, "gpu": 1}, storage_path=storage_dir,
                    verbose=0)
    devices = {t.last_result["devices"] for t in analysis.trials}
    assert devices == {"3", "5"}
