"""Reading experiments written by Ray 2.60 (fixtures) and by tunelib: Result,
ResultGrid, ExperimentAnalysis, without Ray."""

import glob
import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from tunelib.analysis import ExperimentAnalysis, load_experiment
from tunelib.checkpoint import Checkpoint
from tunelib.error import TrialFailedError, TuneError
from tunelib.result import Result
from tunelib.result_grid import ResultGrid
from tunelib.trial import Trial

FIXTURES = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60")


def fixture(name):
    return os.path.join(FIXTURES, name)


def trial_dir(exp, prefix):
    return glob.glob(os.path.join(fixture(exp), prefix + "*"))[0]


def grid(name, metric="loss", mode="min"):
    return ResultGrid(load_experiment(fixture(name), default_metric=metric, default_mode=mode))


@pytest.fixture
def grid_copy(tmp_path):
    dest = tmp_path / "layout_grid"
    shutil.copytree(fixture("layout_grid"), dest)
    for root, dirs, files in os.walk(dest):  # fixtures are read-only
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o755)
    os.chmod(dest, 0o755)
    return str(dest)


# ------------------------------------------------------------------ layout_grid
def test_grid_reads_every_trial_with_metrics_config_and_paths():
    g = grid("layout_grid")
    assert len(g) == 3 and g.num_terminated == 3 and g.num_errors == 0 and g.errors == []
    assert sorted(r.config["lr"] for r in g) == [0.001, 0.01, 0.1]
    for r in g:
        assert r.metrics["training_iteration"] == 5
        assert r.path.startswith(fixture("layout_grid")) and os.path.isdir(r.path)
        assert isinstance(r.filesystem, pafs.LocalFileSystem)
    assert g.experiment_path == fixture("layout_grid")


def test_metrics_dataframe_has_one_row_per_report_and_flattened_config():
    r = grid("layout_grid")[0]
    df = r.metrics_dataframe
    assert len(df) == 5 and list(df["training_iteration"]) == [1, 2, 3, 4, 5]
    assert "config/lr" in df.columns and "config" not in df.columns
    assert df["loss"].iloc[-1] == r.metrics["loss"]


def test_checkpoints_are_existing_dirs_paired_with_their_reports():
    r = grid("layout_grid")[0]
    names = [os.path.basename(c.path) for c, _ in r.best_checkpoints]
    assert names == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000004"]
    for ckpt, metrics in r.best_checkpoints:
        assert metrics["checkpoint_dir_name"] == os.path.basename(ckpt.path)
        assert metrics["config"] == r.config
    assert os.path.basename(r.checkpoint.path) == "checkpoint_000004"
    with r.checkpoint.as_directory() as d:
        assert json.load(open(os.path.join(d, "state.json")))


def test_result_get_best_checkpoint_by_metric():
    r = grid("layout_grid")[0]
    best = r.get_best_checkpoint("loss", "min")
    by_loss = min(r.best_checkpoints, key=lambda p: p[1]["loss"])[0]
    assert best.path == by_loss.path
    assert r.get_best_checkpoint("training_iteration", "max").path == r.checkpoint.path
    assert r.get_best_checkpoint("config/lr", "max") is not None  # nested key lookup
    with pytest.raises(ValueError, match="mode"):
        r.get_best_checkpoint("loss", "best")
    with pytest.raises(RuntimeError, match="Invalid metric name nope"):
        r.get_best_checkpoint("nope", "min")  # no checkpoint qualifies


def test_best_result_on_every_scope():
    g = grid("layout_grid")
    ea = g._experiment_analysis
    for scope in ["last", "avg", "last-5-avg", "last-10-avg", "all"]:
        best = g.get_best_result(scope=scope)
        expected = {}
        for t in ea.trials:
            s = ea.trial_dataframes[t.trial_id]["loss"]
            expected[t.trial_id] = {"last": s.iloc[-1], "avg": s.mean(), "last-5-avg": s.tail(5).mean(),
                                    "last-10-avg": s.tail(10).mean(), "all": s.min()}[scope]
        assert best.metrics["trial_id"] == min(expected, key=expected.get), scope
    assert g.get_best_result("acc", "max").metrics["trial_id"] == g.get_best_result("loss", "min").metrics["trial_id"]


def test_get_best_result_needs_metric_and_mode():
    g = ResultGrid(ExperimentAnalysis(fixture("layout_grid")))
    with pytest.raises(ValueError, match="No metric"):
        g.get_best_result()
    with pytest.raises(ValueError, match="No mode"):
        g.get_best_result(metric="loss")
    with pytest.raises(ValueError, match="mode"):
        g.get_best_result("loss", "best")
    with pytest.raises(ValueError, match="scope"):
        g.get_best_result("loss", "min", scope="median")


def test_unknown_metric_raises_runtime_error_naming_it():
    with pytest.raises(RuntimeError, match="no_such_metric"):
        grid("layout_grid").get_best_result("no_such_metric", "min")


def test_get_dataframe_last_and_filtered():
    g = grid("layout_grid")
    df = g.get_dataframe()
    assert len(df) == 3 and set(df["training_iteration"]) == {5}
    assert {"config/lr", "logdir", "loss"} <= set(df.columns)
    best_rows = g.get_dataframe(filter_metric="loss", filter_mode="min")
    for _, row in best_rows.iterrows():
        trial_df = g._experiment_analysis.trial_dataframes[row["trial_id"]]
        assert row["loss"] == trial_df["loss"].min()
    with pytest.raises(ValueError):
        g.get_dataframe(filter_mode="min")


def test_experiment_analysis_properties():
    ea = ExperimentAnalysis(fixture("layout_grid"), default_metric="loss", default_mode="min")
    assert isinstance(ea.best_trial, Trial) and str(ea.best_trial) == "train_fn_2716e_00000"
    assert ea.best_config == {"lr": 0.001}
    assert ea.best_result["trial_id"] == "2716e_00000"
    assert ea.best_logdir.endswith(ea.best_trial.dirname)
    assert len(ea.best_dataframe) == 5
    assert list(ea.best_result_df.index) == ["2716e_00000"]
    assert set(ea.results) == set(ea.trial_dataframes) == set(ea.get_all_configs())
    assert len(ea.results_df) == 3 and "config/lr" in ea.results_df.columns
    assert ea.get_all_configs(prefix=True)["2716e_00000"] == {"config/lr": 0.001}
    assert isinstance(ea.best_checkpoint, Checkpoint)
    assert ea.get_last_checkpoint(ea.best_trial).path.endswith("checkpoint_000004")
    assert ea.get_best_checkpoint(ea.best_trial, "loss", "min").path.endswith("checkpoint_000002")
    paths = ea.get_trial_checkpoints_paths(ea.best_trial, "training_iteration")
    assert [v for _, v in paths] == [2, 3, 5]
    assert ea.dataframe(metric="loss", mode="min").shape[0] == 3


def test_experiment_analysis_without_defaults_asks_for_them():
    ea = ExperimentAnalysis(fixture("layout_grid"))
    for prop in ("best_trial", "best_config", "best_checkpoint", "best_result"):
        with pytest.raises(ValueError, match="metric"):
            getattr(ea, prop)
    with pytest.raises(ValueError, match="mode"):
        ExperimentAnalysis(fixture("layout_grid"), default_mode="best")
    assert ea.get_best_config("loss", "min") == {"lr": 0.001}


def test_experiment_state_json_path_is_accepted():
    state = glob.glob(os.path.join(fixture("layout_grid"), "experiment_state-*.json"))[0]
    assert len(ExperimentAnalysis(state).trials) == 3


# ------------------------------------------------------------------ other fixtures
def test_failed_trial_error_and_recovered_trial():
    g = grid("layout_fail")
    assert g.num_errors == 1 and g.num_terminated == 1 and len(g.errors) == 1
    err = g.errors[0]
    # error.pkl holds a Ray class: the text of error.txt comes back instead.
    assert isinstance(err, TrialFailedError) and isinstance(err, TuneError)
    assert "RuntimeError: boom" in str(err)
    ok = [r for r in g if r.error is None][0]
    assert ok.config == {"fail_mode": "once"} and ok.metrics["training_iteration"] == 5
    assert [os.path.basename(c.path) for c, _ in ok.best_checkpoints] == ["checkpoint_000003", "checkpoint_000004"]


def test_result_from_path_of_failed_trial_has_error():
    r = Result.from_path(trial_dir("layout_fail", "failing_fn_2e4fb_00000"))
    assert isinstance(r.error, TrialFailedError)
    assert r.metrics["config"] == {"fail_mode": "always"}


def test_checkpoint_metadata_written_by_ray():
    r = grid("extras_meta")[0]
    metas = [c.get_metadata() for c, _ in r.best_checkpoints]
    assert metas == [{"iter": 0, "note": "user metadata"}, {"iter": 1, "note": "user metadata"}]


def test_class_trainable_layout():
    g = grid("extras_class")
    assert len(g) == 2
    best = g.get_best_result()
    assert best.metrics["loss"] == min(r.metrics["loss"] for r in g)
    for r in g:
        assert [os.path.basename(c.path) for c, _ in r.best_checkpoints] == ["checkpoint_000001", "checkpoint_000002"]
        assert r.metrics["done"] is True and len(r.metrics_dataframe) == 3


def test_tune_run_layout_keeps_state_order():
    ea = ExperimentAnalysis(fixture("extras_tune_run"), default_metric="loss", default_mode="min")
    assert [t.trial_id for t in ea.trials] == ["84783_00001", "84783_00000"]
    assert ea.best_config == {"lr": 0.1}
    assert ResultGrid(ea)[0].checkpoint is None


@pytest.mark.parametrize("name", ["layout_grid", "layout_fail", "extras_meta", "extras_class", "extras_tune_run"])
def test_result_from_path_matches_result_grid(name):
    for r in grid(name):
        r2 = Result.from_path(r.path)
        pd.testing.assert_frame_equal(r.metrics_dataframe, r2.metrics_dataframe)
        assert r2.metrics["training_iteration"] == r.metrics["training_iteration"]
        assert (r2.checkpoint is None) == (r.checkpoint is None)


def test_result_from_path_with_explicit_filesystem_and_stripped_path():
    path = trial_dir("layout_grid", "train_fn_2716e_00001")
    r = Result.from_path(path.lstrip("/"), storage_filesystem=pafs.SubTreeFileSystem("/", pafs.LocalFileSystem()))
    assert r.path == path.lstrip("/") and r.config == {"lr": 0.01}
    assert len(r.best_checkpoints) == 3
    with r.checkpoint.as_directory() as d:
        assert os.listdir(d) == ["state.json"]


# ------------------------------------------------------------------ robustness
def test_truncated_last_line_is_skipped(grid_copy):
    tdir = glob.glob(os.path.join(grid_copy, "train_fn_2716e_00000*"))[0]
    path = os.path.join(tdir, "result.json")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 40])  # cut the last line mid-way
    r = Result.from_path(tdir)
    assert len(r.metrics_dataframe) == 4 and r.metrics["training_iteration"] == 4
    g = ResultGrid(load_experiment(grid_copy, default_metric="loss", default_mode="min"))
    assert len([x for x in g if len(x.metrics_dataframe) == 4]) == 1


def test_result_json_newer_than_experiment_state_wins(grid_copy):
    tdir = glob.glob(os.path.join(grid_copy, "train_fn_2716e_00000*"))[0]
    with open(os.path.join(tdir, "result.json"), "a") as f:
        f.write(json.dumps({"loss": 0.0, "training_iteration": 6, "trial_id": "2716e_00000",
                            "config": {"lr": 0.001}}) + "\n")
    ea = ExperimentAnalysis(grid_copy, default_metric="loss", default_mode="min")
    assert ea.results["2716e_00000"]["training_iteration"] == 6


def test_missing_experiment_state_falls_back_to_trial_dirs(grid_copy):
    for f in glob.glob(os.path.join(grid_copy, "experiment_state-*.json")):
        os.remove(f)
    g = ResultGrid(load_experiment(grid_copy, default_metric="loss", default_mode="min"))
    assert len(g) == 3 and g.get_best_result().config == {"lr": 0.001}
    assert {t.trial_id for t in g._experiment_analysis.trials} == {"2716e_00000", "2716e_00001", "2716e_00002"}
    assert all(str(t).startswith("train_fn_") for t in g._experiment_analysis.trials)


def test_result_json_missing_uses_progress_csv(grid_copy):
    tdir = glob.glob(os.path.join(grid_copy, "train_fn_2716e_00002*"))[0]
    os.remove(os.path.join(tdir, "result.json"))
    r = Result.from_path(tdir)
    assert len(r.metrics_dataframe) == 5 and math.isclose(r.metrics["loss"], r.metrics_dataframe["loss"].iloc[-1])


def test_non_experiment_path_raises_clear_error(tmp_path):
    with pytest.raises(ValueError, match="experiment_state"):
        ExperimentAnalysis(str(tmp_path))
    with pytest.raises(ValueError, match="trial directory"):
        ExperimentAnalysis(trial_dir("layout_grid", "train_fn_2716e_00000"))
    with pytest.raises(RuntimeError, match="doesn't exist"):
        Result.from_path(str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="result.json"):
        Result.from_path(str(tmp_path))


def test_heterogeneous_trials_keep_their_own_columns_and_dtypes(tmp_path):
    exp = tmp_path / "exp"
    rows = {"a_00000": [{"x": 1, "only_a": 5, "training_iteration": i} for i in (1, 2)],
            "a_00001": [{"x": 2, "nested": {"k": True}, "training_iteration": i} for i in (1, 2)]}
    trial_data = []
    for tid, rs in rows.items():
        d = exp / f"fn_{tid}"
        d.mkdir(parents=True)
        (d / "result.json").write_text("".join(json.dumps(dict(r, trial_id=tid)) + "\n" for r in rs))
        trial_data.append([json.dumps({"trial_id": tid, "trainable_name": "fn", "config": {},
                                       "status": "TERMINATED", "relative_logdir": d.name}),
                           json.dumps({"last_result": rs[-1]})])
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    dfs = ExperimentAnalysis(str(exp)).trial_dataframes
    assert list(dfs["a_00000"].columns) == ["x", "only_a", "training_iteration", "trial_id"]
    assert dfs["a_00000"]["only_a"].dtype == "int64"
    assert "only_a" not in dfs["a_00001"] and dfs["a_00001"]["nested/k"].dtype == bool


def test_result_repr_hides_auto_keys():
    text = repr(grid("layout_grid")[0])
    assert "loss" in text and "hostname" not in text and "filesystem='local'" in text
    assert repr(grid("layout_grid")).startswith("ResultGrid<[")


def test_experiment_on_memory_filesystem_reads_like_local():
    from tunelib import storage

    fs, path = storage.get_fs_and_path("memory://results_test/layout_grid")
    storage.upload_dir(fixture("layout_grid"), fs, path)
    g = ResultGrid(load_experiment("memory://results_test/layout_grid", default_metric="loss", default_mode="min"))
    assert len(g) == 3 and g.get_best_result().config == {"lr": 0.001}
    best = g.get_best_result()
    assert best.filesystem is fs and storage.fs_uri(fs, best.path).startswith("memory://results_test/")
    with best.checkpoint.as_directory() as d:
        assert os.listdir(d) == ["state.json"]
    assert len(Result.from_path(storage.fs_uri(fs, best.path)).metrics_dataframe) == 5


def test_recorded_best_checkpoints_in_state_give_order_and_metrics(grid_copy):
    state_path = glob.glob(os.path.join(grid_copy, "experiment_state-*.json"))[0]
    state = json.load(open(state_path))
    t, rt = state["trial_data"][0]
    rt = json.loads(rt)
    rt["best_checkpoints"] = [{"dir_name": "checkpoint_000004", "metrics": {"loss": 9.0}},
                              {"dir_name": "checkpoint_000001", "metrics": {"loss": 1.0}},
                              {"dir_name": "checkpoint_000000", "metrics": {"loss": 0.0}}]  # deleted dir
    state["trial_data"][0] = [t, json.dumps(rt)]
    json.dump(state, open(state_path, "w"))
    r = ResultGrid(load_experiment(grid_copy))[0]
    assert [(os.path.basename(c.path), m) for c, m in r.best_checkpoints] == [
        ("checkpoint_000004", {"loss": 9.0}), ("checkpoint_000001", {"loss": 1.0})]
    assert os.path.basename(r.checkpoint.path) == "checkpoint_000004"
    assert os.path.basename(r.get_best_checkpoint("loss", "min").path) == "checkpoint_000001"
