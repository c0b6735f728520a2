"""The tune.run page's legacy API: ``Experiment``, ``run_experiments`` and
``tune.run(Experiment)``, and the ``Trial`` objects they return (Ray's attributes)."""

import os
import re
import warnings

import pyarrow.fs
import pytest

from tunelib import tune
from tunelib.error import TuneError
from tunelib.trial import StorageContext
from tunelib.tune import Experiment, run_experiments
from tunelib.tune.experiment import Trial, _convert_to_experiment_list
from tunelib.tune.stopper import CombinedStopper, MaximumIterationStopper, TimeoutStopper


def counting_fn(config):
    for i in range(2):
        tune.report({"loss": config["x"] * (i + 1)})


def failing_fn(config):
    raise ValueError("boom")


@pytest.fixture
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def _trial_dirs(path):
    return sorted(d for d in os.listdir(path) if d.startswith("counting_fn_"))


# ------------------------------------------------------------------ Experiment (no run)


def test_experiment_spec_has_rays_keys(tmp_path):
    exp = Experiment("exp", counting_fn, stop={"training_iteration": 2}, config={"x": 1},
                     storage_path=str(tmp_path))
    assert list(exp.spec) == [
        "run", "stop", "time_budget_s", "config", "resources_per_trial", "num_samples",
        "checkpoint_config", "trial_name_creator", "trial_dirname_creator", "log_to_file",
        "export_formats", "max_failures", "restore", "storage"]
    assert exp.spec["run"] == exp.run_identifier == "counting_fn"
    assert exp.public_spec == {"stop": {"training_iteration": 2}, "time_budget_s": None,
                               "num_samples": 1}
    assert exp.path == exp.remote_path == exp.local_path == str(tmp_path / "exp")
    assert exp.stopper is None  # a dict stop is a per-trial criterion, as in Ray


def test_experiment_without_name_is_named_after_its_trainable_and_date(tmp_path):
    exp = Experiment("", lambda config: None, storage_path=str(tmp_path))
    assert exp.run_identifier == "lambda"
    assert re.fullmatch(r"lambda_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", exp.storage.experiment_dir_name)


def test_experiment_registers_its_trainable_under_its_name(tmp_path):
    from tunelib.registry import get_trainable

    Experiment("exp", counting_fn, storage_path=str(tmp_path))
    assert get_trainable("counting_fn") is counting_fn


def test_experiment_refuses_checkpoint_frequency_for_a_function_trainable():
    with pytest.raises(ValueError, match="'checkpoint_frequency' cannot be set for a function"):
        Experiment("exp", counting_fn, checkpoint_config={"checkpoint_frequency": 2})


def test_experiment_refuses_a_config_that_is_not_a_dict():
    with pytest.raises(ValueError, match=r"`Experiment\(config\)` must be a dict"):
        Experiment("exp", counting_fn, config=[("x", 1)])


def test_experiment_stopper_combines_stoppers_and_the_time_budget():
    exp = Experiment("exp", counting_fn, stop=[MaximumIterationStopper(3)], time_budget_s=5)
    assert isinstance(exp.stopper, CombinedStopper)
    assert exp.spec["stop"] == {}
    assert isinstance(Experiment("e", counting_fn, time_budget_s=5).stopper, TimeoutStopper)


def test_removed_experiment_paths_raise_as_in_ray():
    exp = Experiment("exp", counting_fn)
    with pytest.raises(DeprecationWarning, match="local_path"):
        exp.local_dir


def test_experiment_list_from_the_dict_spelling(tmp_path):
    experiments = _convert_to_experiment_list(
        {"exp": {"run": counting_fn, "config": {"x": 3}, "storage_path": str(tmp_path)}})
    assert [e.storage.experiment_dir_name for e in experiments] == ["exp"]
    assert experiments[0].spec["config"] == {"x": 3}


def test_experiment_list_refuses_anything_else():
    with pytest.raises(TuneError, match="Invalid argument"):
        _convert_to_experiment_list([counting_fn])


def test_an_unknown_key_in_the_dict_spelling_names_the_spec():
    with pytest.raises(TuneError, match="Failed to load the following Tune experiment"):
        _convert_to_experiment_list({"exp": {"run": counting_fn, "num_sample": 2}})


# ------------------------------------------------------------------ running them


def test_run_experiments_returns_rays_list_of_trials(tmp_path, no_prefect):
    exp = Experiment("exp_a", counting_fn, config={"x": tune.grid_search([1, 2])},
                     storage_path=str(tmp_path))
    trials = run_experiments(exp, verbose=0)
    assert isinstance(trials, list) and all(isinstance(t, Trial) for t in trials)
    assert sorted(t.config["x"] for t in trials) == [1, 2]
    assert {t.status for t in trials} == {Trial.TERMINATED}
    assert sorted(t.last_result["loss"] for t in trials) == [2, 4]
    assert len(_trial_dirs(tmp_path / "exp_a")) == 2


def test_run_experiments_takes_the_dict_spelling(tmp_path, no_prefect):
    trials = run_experiments(
        {"exp_b": {"run": counting_fn, "config": {"x": 3}, "storage_path": str(tmp_path)}},
        verbose=0)
    assert [t.last_result["loss"] for t in trials] == [6]
    assert str(trials[0]).startswith("counting_fn_")


def test_run_experiments_runs_each_experiment_of_a_list(tmp_path, no_prefect):
    experiments = [Experiment(name, counting_fn, config={"x": x}, storage_path=str(tmp_path))
                   for name, x in (("first", 1), ("second", 2))]
    with pytest.warns(UserWarning, match="one after another"):
        trials = run_experiments(experiments, verbose=0)
    assert [t.last_result["loss"] for t in trials] == [2, 4]
    assert len(_trial_dirs(tmp_path / "first")) == len(_trial_dirs(tmp_path / "second")) == 1


def test_run_experiments_raises_once_every_experiment_ran(tmp_path, no_prefect):
    experiments = [Experiment("bad", failing_fn, storage_path=str(tmp_path)),
                   Experiment("good", counting_fn, config={"x": 1}, storage_path=str(tmp_path))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(TuneError, match="Trials did not complete"):
            run_experiments(experiments, verbose=0)
    assert len(_trial_dirs(tmp_path / "good")) == 1


def test_tune_run_takes_an_experiment(tmp_path, no_prefect):
    exp = Experiment("exp_c", counting_fn, config={"x": tune.grid_search([1, 2])},
                     storage_path=str(tmp_path))
    analysis = tune.run(exp, metric="loss", mode="min", verbose=0)
    assert isinstance(analysis, tune.ExperimentAnalysis)
    assert analysis.experiment_path == str(tmp_path / "exp_c")
    assert analysis.best_config == {"x": 1}


def test_tune_run_warns_that_an_experiments_own_arguments_win(tmp_path, no_prefect):
    exp = Experiment("exp_d", counting_fn, config={"x": 2}, storage_path=str(tmp_path))
    with pytest.warns(UserWarning, match=r"tune.run\(config=\.\.\., num_samples=\.\.\.\) is "
                                         "ignored"):
        analysis = tune.run(exp, config={"x": 5}, num_samples=3, verbose=0)
    assert [t.config for t in analysis.trials] == [{"x": 2}]


def test_tune_run_takes_a_list_of_experiments(tmp_path, no_prefect):
    experiments = [Experiment(name, counting_fn, config={"x": x}, storage_path=str(tmp_path))
                   for name, x in (("first", 1), ("second", 2))]
    with pytest.warns(UserWarning, match="one after another"):
        analysis = tune.run(experiments, metric="loss", mode="min", verbose=0)
    assert analysis.experiment_path == str(tmp_path / "first")
    assert sorted(r["loss"] for r in analysis.results.values()) == [2, 4]
    assert [len(df) for df in analysis.trial_dataframes.values()] == [2, 2]


# ------------------------------------------------------------------ Trial, as Ray's

RAY_TRIAL_ATTRIBUTES = [  # Ray 2.60's, that describe a trial (see the README for the rest)
    "ERROR", "PAUSED", "PENDING", "RUNNING", "TERMINATED", "checkpoint", "config",
    "custom_trial_name", "error_file", "evaluated_params", "experiment_dir_name",
    "experiment_tag", "generate_id", "get_error", "get_pickled_error", "has_checkpoint",
    "has_reported_at_least_once", "is_finished", "last_result", "local_dir",
    "local_experiment_path", "local_path", "logdir", "node_ip", "num_failures", "path",
    "relative_logdir", "remote_experiment_path", "restore_path", "set_config",
    "set_experiment_tag", "set_status", "set_storage", "status", "storage",
    "trainable_name", "trial_id", "update_last_result",
]


@pytest.mark.parametrize("name", RAY_TRIAL_ATTRIBUTES)
def test_trial_has_rays_attribute(name):
    assert name in dir(Trial("f"))


def test_trial_is_built_as_in_ray():
    trial = Trial("train_fn", config={"lr": 0.1}, experiment_tag="0_lr=0.1")
    assert re.fullmatch(r"[0-9a-f]{8}", trial.trial_id)
    assert str(trial) == f"train_fn_{trial.trial_id}"
    assert trial.status == Trial.PENDING and trial.path is None


def test_trial_name_carries_the_env_as_in_ray():
    assert str(Trial("PPO", config={"env": "CartPole/v1"}, trial_id="abc")) == "PPO_CartPole_v1_abc"


def test_trial_paths_follow_its_storage(tmp_path):
    trial = Trial("f")
    trial.set_storage(StorageContext(pyarrow.fs.LocalFileSystem(), f"{tmp_path}/exp",
                                     trial_dir_name="f_00000"))
    assert trial.path == trial.local_path == f"{tmp_path}/exp/f_00000"
    assert trial.relative_logdir == trial.dirname == "f_00000"
    assert trial.experiment_dir_name == "exp"
    assert trial.remote_experiment_path == trial.local_experiment_path == f"{tmp_path}/exp"
    assert trial.storage.trial_fs_path == trial.path
    assert trial.storage.storage_fs_path == str(tmp_path)


def test_trial_logdir_raises_as_in_ray():
    with pytest.raises(DeprecationWarning, match="local_path"):
        Trial("f").logdir


def test_trial_update_last_result_adds_the_experiment_tag():
    trial = Trial("f", experiment_tag="1_lr=0.01")
    trial.update_last_result({"loss": 1.0})
    assert trial.last_result == {"loss": 1.0, "experiment_tag": "1_lr=0.01"}
    assert trial.has_reported_at_least_once


def test_trial_set_status_stamps_the_start():
    trial = Trial("f")
    trial.set_status("RUNNING")
    assert trial.status == Trial.RUNNING and trial.start_time is not None


def test_trials_of_a_run_know_their_directory(tmp_path, no_prefect):
    trials = run_experiments(Experiment("exp_p", counting_fn, config={"x": 1},
                                        storage_path=str(tmp_path)), verbose=0)
    assert trials[0].path == str(tmp_path / "exp_p" / trials[0].dirname)
    assert os.path.isfile(os.path.join(trials[0].path, "result.json"))


def test_trial_is_finished_is_a_method_as_in_ray():
    assert Trial("f", status=Trial.TERMINATED).is_finished() is True
