"""tunelib and Ray read each other's experiment directories; these tests need no Ray.

Ray's side is what Ray 2.60 wrote: ``shared/fixtures/ray-2.60`` and
``tests/fixtures/ray_unfinished`` (an experiment whose driver was killed mid-run; its README
says how it was made). What Ray makes of tunelib's directories is in test_ray_interop.py,
which runs Ray.
"""

import json
import os
import pickletools
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pyarrow.fs
import pytest

from tunelib import _layout, _ray_compat, tune
from tunelib.config import CheckpointConfig, RunConfig, TuneConfig
from tunelib.trial import StorageContext, Trial

HERE = Path(__file__).resolve().parent
RAY_UNFINISHED = HERE / "fixtures" / "ray_unfinished" / "ray_unfinished"
RAY_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60"
RAY_GRID = RAY_FIXTURES / "layout_grid"


def train_fn(config):
    """The fixture's trainable (make_fixture.py), on tunelib: counts to 4, one checkpoint
    a step, and resumes from its checkpoint's step."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"]
    for step in range(start + 1, 5):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"score": config["lr"] * step},
                        checkpoint=tune.Checkpoint.from_directory(d))


def _state(experiment_dir: Path) -> dict:
    return json.loads(next(experiment_dir.glob("experiment_state-*.json")).read_text())


def _rows(trial_dir: str) -> list:
    with open(os.path.join(trial_dir, "result.json")) as f:
        return [json.loads(line) for line in f]


def _ray_globals(blob_hex: str) -> set:
    """The ``module.name`` of every class or function a pickle names."""
    names, pushed, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(bytes.fromhex(blob_hex)):
        if op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            names.add(".".join(pushed[-2:]))
            pushed.append(None)
        else:
            pushed.append(arg if isinstance(arg, str) else None)
    return names


# ------------------------------------------------------------------ tunelib continues Ray's


@pytest.fixture(scope="module")
def continued(tmp_path_factory, prefect_server):
    """The Ray experiment the killed driver left, continued by tunelib (once per module)."""
    path = tmp_path_factory.mktemp("ray") / "ray_unfinished"
    shutil.copytree(RAY_UNFINISHED, path)
    grid = tune.Tuner.restore(str(path), train_fn).fit()
    return path, grid, {r.config["lr"]: r for r in grid}


@pytest.mark.slow
def test_tunelib_continues_a_ray_experiment_to_the_end(continued):
    _, grid, by_lr = continued
    assert not grid.errors
    assert sorted(by_lr) == [0.1, 1.0, 10.0, 100.0]
    for lr, result in by_lr.items():
        assert result.metrics["training_iteration"] == 4
        assert result.metrics["score"] == pytest.approx(lr * 4)


@pytest.mark.slow
def test_a_trial_ray_finished_is_kept_as_ray_left_it(continued):
    _, _, by_lr = continued
    rows = _rows(by_lr[0.1].path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert {r["pid"] for r in rows} == {15387}  # Ray's worker process, nothing rerun


@pytest.mark.slow
def test_the_trial_ray_was_running_resumes_from_its_last_checkpoint(continued):
    _, _, by_lr = continued
    rows = _rows(by_lr[1.0].path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["iterations_since_restore"] for r in rows] == [1, 2, 1, 2]
    assert rows[1]["pid"] == 15590 and rows[2]["pid"] != 15590
    # Ray's RunConfig(checkpoint_config=CheckpointConfig(num_to_keep=2)), from its tuner.pkl
    kept = sorted(n for n in os.listdir(by_lr[1.0].path) if n.startswith("checkpoint_"))
    assert kept == ["checkpoint_000002", "checkpoint_000003"]


@pytest.mark.slow
def test_the_search_continues_where_rays_stopped_with_rays_numbering(continued):
    _, _, by_lr = continued
    assert "_6334f_00002_2_lr=10.0000_" in by_lr[10.0].path  # Ray's pending trial
    assert "_6334f_00003_3_lr=100.0000_" in by_lr[100.0].path  # Ray's next variant


@pytest.mark.slow
def test_rays_tune_config_holds_for_the_continued_experiment(continued):
    _, grid, _ = continued
    # TuneConfig(metric="score", mode="max") came from Ray's tuner.pkl
    assert grid.get_best_result().config == {"lr": 100.0}


@pytest.mark.slow
def test_rays_state_files_stay_and_tunelibs_are_newer(continued):
    path, _, _ = continued
    states = sorted(p.name for p in path.glob("experiment_state-*.json"))
    assert states[0] == "experiment_state-2020-01-01_00-00-00.json"  # Ray's, untouched
    assert (path / states[0]).read_bytes() == (RAY_UNFINISHED / states[0]).read_bytes()
    assert len(states) == 2


def test_restoring_a_ray_experiment_reads_its_pickles_without_ray_or_warnings(tmp_path):
    path = tmp_path / "ray_unfinished"
    shutil.copytree(RAY_UNFINISHED, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = tune.Tuner.restore(str(path), train_fn).get_results()
    assert len(results) == 3
    assert not any(name == "ray" or name.startswith("ray.") for name in sys.modules)


def test_a_ray_experiment_searched_by_a_searcher_is_not_continued(tmp_path):
    path = tmp_path / "ray_unfinished"
    shutil.copytree(RAY_UNFINISHED, path)
    searcher_state = _ray_compat.RayObject("ray.tune.search.search_generator",
                                           "SearchGenerator", {"_counter": 3})
    (path / "search_gen_state-2020-01-01_00-00-00.json").write_bytes(
        _ray_compat.dumps(searcher_state))
    with pytest.raises(ValueError, match="search_gen_state-2020-01-01_00-00-00.json"):
        tune.Tuner.restore(str(path), train_fn).fit()


# ------------------------------------------------------------------ Ray's pickles, read


def test_rays_tuner_pkl_is_read_as_tunelibs_configs():
    state = _ray_compat.tuner_state_from_ray(
        _ray_compat.loads((RAY_UNFINISHED / "tuner.pkl").read_bytes()))
    assert state["tune_config"] == TuneConfig(metric="score", mode="max",
                                              max_concurrent_trials=2)
    run_config = state["run_config"]
    assert isinstance(run_config, RunConfig)
    assert run_config.checkpoint_config == CheckpointConfig(num_to_keep=2)
    assert state["trainable_name"] == "train_fn"


def test_rays_variant_generator_is_continued_by_tunelibs():
    ray_state = _ray_compat.read_search_state(pyarrow.fs.LocalFileSystem(), str(RAY_UNFINISHED))
    generator = ray_state.generator
    assert ray_state.param_space == {"lr": {"grid_search": [0.1, 1.0, 10.0, 100.0]}}
    assert generator.next_suggestion("6334f_00003") is None  # 2 trials live: Ray's limit
    generator.on_trial_complete("6334f_00001")
    suggestion = generator.next_suggestion("6334f_00003")
    assert (suggestion.config, suggestion.experiment_tag) == ({"lr": 100.0}, "3_lr=100.0000")
    assert suggestion.evaluated_params == {"lr": 100.0}
    assert generator.next_suggestion("6334f_00004") is None and generator.is_finished()


def test_a_ray_object_tunelib_has_no_equivalent_for_loads_as_a_stand_in():
    blob = _ray_compat.dumps(_ray_compat.RayObject("ray.tune.logger.somewhere", "Reporter",
                                                   {"columns": ["loss"]}))
    obj = _ray_compat.loads(blob)
    assert isinstance(obj, _ray_compat.RayStandIn)
    assert (obj.ray_path, obj.columns) == ("ray.tune.logger.somewhere.Reporter", ["loss"])


def test_rays_trial_state_gives_the_trials_resources_and_kept_checkpoints():
    trials = {t.trial_id: t for t, _ in _layout.trials_from_state(_state(RAY_GRID))}
    trial = trials["2716e_00001"]
    assert trial.resources == {"cpu": 1.0}
    assert [name for name, _ in trial.kept_checkpoints] == [
        "checkpoint_000001", "checkpoint_000002", "checkpoint_000004"]
    assert trial.kept_checkpoints[-1][1]["training_iteration"] == 5
    assert trial.next_checkpoint_index == 5


# ------------------------------------------------------------------ what tunelib writes for Ray


def _tunelib_trial(tmp_path, **kwargs) -> Trial:
    result = {"loss": 0.5, "training_iteration": 2, "time_total_s": 1.0,
              "checkpoint_dir_name": "checkpoint_000001", "config": {"lr": 0.1}}
    trial = Trial("train_fn", config={"lr": 0.1}, trial_id="abcde_00001",
                  dirname="train_fn_abcde_00001_1_lr=0.1000", experiment_tag="1_lr=0.1000",
                  last_result=result, start_time=1.0, next_checkpoint_index=2,
                  kept_checkpoints=[("checkpoint_000000", dict(result, loss=0.7)),
                                    ("checkpoint_000001", result)], **kwargs)
    trial.set_storage(StorageContext(pyarrow.fs.LocalFileSystem(), str(tmp_path / "exp")))
    return trial


def _runner_data() -> dict:
    return _layout.runner_data(
        metric="loss", mode="min", name="exp", session="2026-01-01_00-00-00", start_time=1.0,
        iteration=3, has_errored=False, should_stop=False, reuse_actors=False,
        fail_fast=False, max_pending_trials=200, checkpoint_config=CheckpointConfig(),
        has_stopper=False)


def test_tunelibs_experiment_state_has_every_field_ray_writes(tmp_path):
    ray = _state(RAY_GRID)
    ray_info, ray_runtime = (json.loads(s) for s in ray["trial_data"][0])
    info, runtime = (json.loads(s) for s in _layout.trial_state(
        _tunelib_trial(tmp_path), 0, CheckpointConfig(num_to_keep=2)))
    assert set(ray_info) <= set(info)
    assert set(ray_runtime) <= set(runtime)
    assert set(ray["runner_data"]) <= set(_runner_data())


def test_tunelibs_pickled_fields_name_the_classes_rays_do(tmp_path):
    ray_info, ray_runtime = (json.loads(s) for s in _state(RAY_GRID)["trial_data"][0])
    info, runtime = (json.loads(s) for s in _layout.trial_state(
        _tunelib_trial(tmp_path), 0, CheckpointConfig(num_to_keep=2)))
    for field in ("storage", "placement_group_factory"):
        theirs, ours = ray_info[field], info[field]
        theirs, ours = (x["value"] if isinstance(x, dict) else x for x in (theirs, ours))
        assert _ray_globals(ours) == _ray_globals(theirs), field
    assert (_ray_globals(runtime["checkpoint_manager"]["value"])
            == _ray_globals(ray_runtime["checkpoint_manager"]["value"]))


def test_tunelibs_trial_state_reads_back_the_same_trial(tmp_path):
    trial = _tunelib_trial(tmp_path, resources={"cpu": 2.0, "gpu": 0.5, "accel": 1.0})
    state = {"trial_data": [_layout.trial_state(trial, 0, CheckpointConfig())],
             "runner_data": _runner_data()}
    (back, _), = _layout.trials_from_state(json.loads(_layout.experiment_state(
        state["trial_data"], state["runner_data"], 1.0)))
    assert back.resources == {"cpu": 2.0, "gpu": 0.5, "accel": 1.0}
    assert back.kept_checkpoints == trial.kept_checkpoints
    assert (back.config, back.dirname, back.next_checkpoint_index) == (
        trial.config, trial.dirname, 2)


def test_the_checkpoint_manager_tunelib_writes_lists_rays_best_and_latest(tmp_path):
    _, runtime = (json.loads(s) for s in _layout.trial_state(
        _tunelib_trial(tmp_path), 0,
        CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="loss",
                         checkpoint_score_order="min")))
    manager = _ray_compat.loads(bytes.fromhex(runtime["checkpoint_manager"]["value"]))
    trial_path = f"{tmp_path}/exp/train_fn_abcde_00001_1_lr=0.1000"
    assert [r.checkpoint.path for r in manager._checkpoint_results] == [
        f"{trial_path}/checkpoint_000001"]
    assert manager._latest_checkpoint_result.checkpoint.path == f"{trial_path}/checkpoint_000001"
    assert manager._checkpoint_config == CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute="loss", checkpoint_score_order="min")


def test_metric_analysis_keeps_rays_statistics():
    info, runtime = (json.loads(s) for s in _state(RAY_GRID)["trial_data"][0])
    analysis = _layout.MetricAnalysis()
    for row in _rows(str(RAY_GRID / info["relative_logdir"])):
        analysis.update(dict(row, experiment_tag=info["experiment_tag"]))
    assert analysis.stats == runtime["metric_analysis"]
    assert analysis.windows == _layout.MetricAnalysis.from_runtime(runtime).windows


def test_trial_state_writes_the_metric_analysis_a_trial_keeps(tmp_path):
    trial = _tunelib_trial(tmp_path)
    trial.metric_analysis = _layout.MetricAnalysis()
    trial.metric_analysis.update({"loss": 3.0, "training_iteration": 1})
    trial.metric_analysis.update({"loss": 1.0, "training_iteration": 2})
    _, runtime = (json.loads(s) for s in _layout.trial_state(trial, 0, CheckpointConfig()))
    assert runtime["metric_analysis"]["loss"] == {
        "max": 3.0, "min": 1.0, "avg": 2.0, "last": 1.0, "last-5-avg": 2.0, "last-10-avg": 2.0}
    assert _layout.MetricAnalysis.from_runtime(runtime).windows["loss"] == {
        "5": [3.0, 1.0], "10": [3.0, 1.0]}
