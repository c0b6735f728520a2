"""``tune.run``'s arguments with Ray's meaning: ``restore=<checkpoint>``, scheduler and
search algorithm names, ``resume=True`` on a new experiment; and the smaller Ray
behaviours of issue 13 (trial names and ids, ``experiment_tag``, trial order, errors)."""

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from tunelib import tune

Searcher = tune.search.Searcher  # Ray's ray.tune.search.Searcher

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60"


@pytest.fixture
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def loss_fn(config):
    for i in range(2):
        tune.report({"loss": config.get("x", 1) * (i + 1)})


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = 0

    def step(self):
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.value = json.load(f)["value"]


def checkpoint_reader_fn(config):
    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            tune.report({"restored_value": json.load(f)["value"]})


@pytest.fixture
def counter_checkpoint(tmp_path):
    """A Counter checkpoint at value 3, as a class trainable writes it."""
    path = tmp_path / "checkpoint_000002"
    path.mkdir()
    (path / "state.json").write_text(json.dumps({"value": 3}))
    return str(path)


# ------------------------------------------------------------------ restore=<checkpoint>


def test_restore_starts_a_class_trainable_from_the_checkpoint(tmp_path, counter_checkpoint,
                                                              no_prefect):
    analysis = tune.run(Counter, restore=counter_checkpoint, stop={"training_iteration": 2},
                        storage_path=str(tmp_path), name="restored", verbose=0)
    frame = analysis.trial_dataframes[analysis.trials[0].trial_id]
    # Ray: load_checkpoint ran, and the iterations count from the restore on
    assert frame[["value", "training_iteration"]].values.tolist() == [[4, 1], [5, 2]]
    assert analysis.trials[0].restore_path == counter_checkpoint


def test_restore_gives_a_function_trainable_the_checkpoint(tmp_path, counter_checkpoint,
                                                           no_prefect):
    analysis = tune.run(checkpoint_reader_fn, restore=counter_checkpoint,
                        storage_path=str(tmp_path), name="frestore", verbose=0)
    assert analysis.trials[0].last_result["restored_value"] == 3


def test_restore_of_a_missing_directory_fails_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match="`restore` must be a checkpoint directory"):
        tune.run(Counter, restore=str(tmp_path / "nope"), storage_path=str(tmp_path))


# ------------------------------------------------------------------ names of things


@pytest.mark.parametrize("scheduler", ["fifo", "async_hyperband"])
def test_run_takes_a_scheduler_by_name(tmp_path, no_prefect, scheduler):
    analysis = tune.run(loss_fn, scheduler=scheduler, metric="loss", mode="min",
                        storage_path=str(tmp_path), name="sched", verbose=0)
    assert [t.status for t in analysis.trials] == ["TERMINATED"]


def test_an_unknown_scheduler_name_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="must be one of .*'fifo'.*Got: 'fiffo'"):
        tune.run(loss_fn, scheduler="fiffo", storage_path=str(tmp_path))


def test_run_takes_a_search_algorithm_by_name(tmp_path, no_prefect):
    analysis = tune.run(loss_fn, search_alg="random", config={"x": tune.uniform(1, 2)},
                        num_samples=2, storage_path=str(tmp_path), name="rand", verbose=0)
    assert len(analysis.trials) == 2
    assert all(1 <= t.config["x"] <= 2 for t in analysis.trials)


def test_trials_of_a_registered_trainable_are_named_after_it(tmp_path, no_prefect):
    tune.register_trainable("lambda_id", lambda config: tune.report({"loss": 1}))
    analysis = tune.run("lambda_id", storage_path=str(tmp_path), name="lam", verbose=0)
    assert str(analysis.trials[0]).startswith("lambda_id_")
    assert any(d.startswith("lambda_id_") for d in os.listdir(tmp_path / "lam"))


def test_variant_trial_ids_have_rays_form(tmp_path, no_prefect):
    analysis = tune.run(loss_fn, config={"x": tune.grid_search([1, 2])},
                        storage_path=str(tmp_path), name="ids", verbose=0)
    ids = [t.trial_id for t in analysis.trials]
    assert all(re.fullmatch(r"[0-9a-f]{5}_0000[01]", i) for i in ids)
    assert len({i.split("_")[0] for i in ids}) == 1


class TwoPoints(Searcher):
    """Suggests x=1 then x=2."""

    def __init__(self):
        super().__init__(metric="loss", mode="min")
        self._points = [{"x": 1}, {"x": 2}]

    def suggest(self, trial_id):
        return self._points.pop(0) if self._points else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def test_searcher_trial_ids_are_eight_hex_digits(tmp_path, no_prefect):
    analysis = tune.run(loss_fn, search_alg=TwoPoints(), metric="loss", mode="min",
                        num_samples=2, storage_path=str(tmp_path), name="searched", verbose=0)
    assert [bool(re.fullmatch(r"[0-9a-f]{8}", t.trial_id)) for t in analysis.trials] == [
        True, True]


def test_results_carry_the_experiment_tag(tmp_path, no_prefect):
    analysis = tune.run(loss_fn, config={"x": tune.grid_search([1, 2])},
                        storage_path=str(tmp_path), name="tags", verbose=0)
    assert "experiment_tag" in analysis.results_df.columns
    tags = sorted(t.last_result["experiment_tag"] for t in analysis.trials)
    assert tags == ["0_x=1", "1_x=2"]


# ------------------------------------------------------------------ Ray's own directories


def _copy_fixture(name, tmp_path):
    return shutil.copytree(FIXTURES / name, tmp_path / name)


def test_trials_load_in_the_order_of_rays_state_file(tmp_path):
    # Ray writes its state file's trials in the order of a set (not creation order) and
    # reads them back in that order; so does tunelib (checked against Ray 2.60 itself)
    path = _copy_fixture("layout_grid", tmp_path)
    analysis = tune.ExperimentAnalysis(str(path))
    assert [t.trial_id for t in analysis.trials] == ["2716e_00001", "2716e_00002",
                                                     "2716e_00000"]
    assert [r.metrics["trial_id"] for r in tune.ResultGrid(analysis)] == [
        "2716e_00001", "2716e_00002", "2716e_00000"]


def test_the_error_of_a_ray_trial_keeps_its_exception_type(tmp_path):
    path = _copy_fixture("layout_fail", tmp_path)
    errors = [r.error for r in tune.ResultGrid(tune.ExperimentAnalysis(str(path))) if r.error]
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)  # Ray: RayTaskError(RuntimeError)
    assert "boom at i=2" in str(errors[0])


# ------------------------------------------------------------------ resume


def test_resume_of_an_experiment_that_does_not_exist_starts_it(tmp_path, no_prefect, caplog):
    with caplog.at_level(logging.ERROR, logger="tunelib"):
        analysis = tune.run(loss_fn, resume=True, storage_path=str(tmp_path), name="fresh",
                            verbose=0)
    assert [t.status for t in analysis.trials] == ["TERMINATED"]
    assert "no experiment state file" in caplog.text and "Restarting experiment" in caplog.text


def test_resume_of_an_experiment_that_does_not_exist_raises_with_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="no experiment state file"):
        tune.run(loss_fn, resume=True, fail_fast=True, storage_path=str(tmp_path),
                 name="fresh")


def test_resume_auto_starts_a_new_experiment_quietly(tmp_path, no_prefect, caplog):
    with caplog.at_level(logging.ERROR, logger="tunelib"):
        analysis = tune.run(loss_fn, resume="AUTO", storage_path=str(tmp_path), name="auto",
                            verbose=0)
    assert len(analysis.trials) == 1 and "no experiment state file" not in caplog.text

