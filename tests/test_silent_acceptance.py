"""Nothing accepted and ignored: a Ray setting tunelib does not honour warns, naming it and
pointing at the user's line, and a tuner.pkl that cannot be written warns with its path
and the cause."""

import os
import types
import warnings

import pytest

from tunelib import tune

IGNORED = [
    (tune.RunConfig, "sync_config", tune.SyncConfig()),
    (tune.TuneConfig, "chdir_to_trial_dir", True),
    (tune.CheckpointConfig, "_checkpoint_keep_all_ranks", True),
    (tune.CheckpointConfig, "_checkpoint_upload_from_workers", False),
]


@pytest.mark.parametrize(("cls", "field", "value"), IGNORED,
                         ids=[f"{c.__name__}.{f}" for c, f, _ in IGNORED])
def test_an_ignored_field_warns_once_at_the_callers_line(cls, field, value):
    with pytest.warns(UserWarning, match=rf"{cls.__name__}\({field}=\.\.\.\) is ignored") as got:
        cls(**{field: value})
    assert len(got) == 1
    assert got[0].filename == __file__


def test_defaults_and_honoured_fields_do_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tune.RunConfig()
        tune.RunConfig(name="exp", storage_path=str(tmp_path), log_to_file=True, verbose=0,
                       stop={"training_iteration": 2}, callbacks=[],
                       progress_reporter=tune.CLIReporter(),
                       failure_config=tune.FailureConfig(max_failures=1, fail_fast=True),
                       checkpoint_config=tune.CheckpointConfig(num_to_keep=2,
                                                               checkpoint_frequency=1,
                                                               checkpoint_at_end=True))
        tune.TuneConfig(metric="loss", mode="min", num_samples=2, reuse_actors=True)


@pytest.fixture
def no_experiment(monkeypatch):
    """tune.run without running anything: the configs it builds are captured instead."""
    seen = {}

    def run_experiment(trainable, **kwargs):
        seen.update(kwargs)
        return types.SimpleNamespace(trials=[])

    monkeypatch.setattr("tunelib.runner.run_experiment", run_experiment)
    return seen


def test_tune_run_passes_its_ignored_arguments_on_to_warn(no_experiment):
    with pytest.warns(UserWarning) as got:
        tune.run(lambda config: None, sync_config=tune.SyncConfig(), chdir_to_trial_dir=True)
    messages = sorted(str(w.message).split(" is ignored")[0] for w in got)
    assert messages == ["RunConfig(sync_config=...)", "TuneConfig(chdir_to_trial_dir=...)"]
    assert {w.filename for w in got} == {__file__}
    assert no_experiment["run_config"].sync_config is not None


def one_step(config):
    tune.report({"score": config["x"]})


def test_an_unwritable_tuner_pkl_warns_with_its_path_and_cause(storage_dir, monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    # a directory where the file should go: the write fails for real (IsADirectoryError)
    tuner_file = os.path.join(storage_dir, "exp", "tuner.pkl")
    os.makedirs(tuner_file)
    tuner = tune.Tuner(one_step, param_space={"x": 1},
                       run_config=tune.RunConfig(name="exp", storage_path=storage_dir, verbose=0))
    with pytest.warns(RuntimeWarning, match="tuner.pkl") as got:
        grid = tuner.fit()
    failures = [w for w in got if "tuner.pkl" in str(w.message)]
    assert len(failures) == 1
    message = str(failures[0].message)
    assert repr(tuner_file) in message and "IsADirectoryError" in message
    assert failures[0].filename == __file__
    assert [r.metrics["score"] for r in grid] == [1]  # the experiment itself is complete
