"""Reading an experiment back: the snapshot fit() leaves (``tunelib._readback``) gives
what reading the state and the trial dirs gives, is used only for the state it was made
from, and the rows of ``dataframe()`` come straight from the combined results table as
each trial's own frame would give them."""

import glob
import json
import os
import shutil

import pandas as pd
import pytest

from tunelib import _readback, _reader, tune
from tunelib.analysis import ExperimentAnalysis
from tunelib.tune import Tuner


@pytest.fixture
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def irregular(config):
    """Keys every 2nd and 3rd report, nested dicts, bools, strings, a null; checkpoints;
    one trial fails after reporting."""
    import tempfile

    for i in range(config["n"]):
        result = {"loss": config["lr"] / (i + 1) + (0.5 if i == 2 else 0.0), "i": i,
                  "flag": i % 2 == 0, "word": f"w{i}", "fn_of_i": config["fn"](i)}
        if i % 3 == 0:
            result["every3"] = i
        if i % 2 == 0:
            result["nested"] = {"a": i, "b": {"c": float(i)}}
        if config["n"] > 1 and i == 1:
            result["maybe"] = None
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.txt"), "w") as f:
                f.write(str(i))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
    if config["lr"] == 0.4 and config["n"] == 4:
        raise ValueError("boom at the end")


def run_irregular(storage_path, name="rb"):
    return Tuner(
        irregular,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4]), "n": tune.grid_search([1, 4]),
                     "fn": lambda x: x * x, "shape": (2, 3)},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="loss",
                checkpoint_score_order="min")),
    ).fit()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    os.environ["TUNELIB_DISABLE_PREFECT"] = "1"
    try:
        grid = run_irregular(str(tmp_path_factory.mktemp("readback")))
    finally:
        os.environ.pop("TUNELIB_DISABLE_PREFECT", None)
    assert grid.num_errors == 1 and len(grid) == 8
    return grid.experiment_path


def without_snapshot(path, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(_readback, "load", lambda fs, state: None)
        return ExperimentAnalysis(path, **kwargs)


def from_snapshot(path, monkeypatch, **kwargs):
    with monkeypatch.context() as m:   # proof it is used: no trial dir is read
        m.setattr(_reader, "read_trial_dirs", lambda *a, **k: pytest.fail("read the dirs"))
        return ExperimentAnalysis(path, **kwargs)


def snapshot_files(path):
    return glob.glob(os.path.join(path, _readback.PREFIX + "*.pkl"))


def test_fit_leaves_a_snapshot_beside_its_state(experiment):
    (state,) = glob.glob(os.path.join(experiment, "experiment_state-*.json"))
    session = os.path.basename(state)[len("experiment_state-"):-len(".json")]
    assert snapshot_files(experiment) == [os.path.join(experiment, f".tunelib-readback-{session}.pkl")]


def without_config(result):
    return {k: v for k, v in result.items() if k != "config"}


def assert_same_analysis(a, b):
    assert [t.trial_id for t in a.trials] == [t.trial_id for t in b.trials]
    for x, y in zip(a.trials, b.trials):
        assert (x.status, x.dirname, x.experiment_tag, x.evaluated_params, x.path, x.error_msg,
                x.checkpoint_dir_name, x.kept_checkpoints, x.num_failures) == \
               (y.status, y.dirname, y.experiment_tag, y.evaluated_params, y.path, y.error_msg,
                y.checkpoint_dir_name, y.kept_checkpoints, y.num_failures)
        assert x.last_result.keys() == y.last_result.keys()
        assert without_config(x.last_result) == without_config(y.last_result)
        # the config's objects survive: a lambda (by value), a tuple as a tuple
        assert x.config["fn"](3) == y.config["fn"](3) == 9 and x.config["shape"] == (2, 3)
        assert x.metric_analysis.stats == y.metric_analysis.stats
        assert (x.checkpoint.path if x.checkpoint else None) == \
               (y.checkpoint.path if y.checkpoint else None)
        pd.testing.assert_frame_equal(a.trial_dataframes[x.trial_id],
                                      b.trial_dataframes[y.trial_id])
        assert a.get_trial_checkpoints_paths(x, "loss") == b.get_trial_checkpoints_paths(y, "loss")
    for args in ((), ("loss", "min")):
        assert_same_rows(a.dataframe(*args), b.dataframe(*args))
    for scope in ("last", "avg", "all"):
        assert a.get_best_trial("loss", "min", scope).trial_id == \
               b.get_best_trial("loss", "min", scope).trial_id
    assert a.best_checkpoint.path == b.best_checkpoint.path


def test_the_snapshot_reads_as_the_state_and_dirs_do(experiment, monkeypatch):
    kw = dict(default_metric="loss", default_mode="min")
    assert_same_analysis(from_snapshot(experiment, monkeypatch, **kw),
                         without_snapshot(experiment, monkeypatch, **kw))


def test_result_grid_from_the_snapshot(experiment, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(_reader, "read_trial_dirs", lambda *a, **k: pytest.fail("read the dirs"))
        grid = Tuner.restore(experiment, irregular).get_results()
    reference = Tuner.restore(experiment, irregular)
    with monkeypatch.context() as m:
        m.setattr(_readback, "load", lambda fs, state: None)
        reference = reference.get_results()
    assert grid.num_errors == 1 and "boom at the end" in str(grid.errors[0])
    assert type(grid.errors[0]) is type(reference.errors[0])
    for r, s in zip(grid, reference):
        assert without_config(r.metrics) == without_config(s.metrics) and r.path == s.path
        assert r.metrics["config"]["fn"](3) == s.metrics["config"]["fn"](3) == 9
        assert [c.path for c, _ in r.best_checkpoints] == [c.path for c, _ in s.best_checkpoints]
        assert [m for _, m in r.best_checkpoints] == [m for _, m in s.best_checkpoints]
    assert_same_rows(grid.get_dataframe(), reference.get_dataframe())
    assert_same_rows(grid.get_dataframe("loss", "max"), reference.get_dataframe("loss", "max"))


def test_a_copied_experiment_reads_its_snapshot_where_it_now_lies(experiment, tmp_path,
                                                                  monkeypatch):
    copy = str(tmp_path / "moved")
    shutil.copytree(experiment, copy)
    ea = from_snapshot(copy, monkeypatch, default_metric="loss", default_mode="min")
    assert all(t.path.startswith(copy) for t in ea.trials)
    assert ea.best_checkpoint.path.startswith(copy) and os.path.isdir(ea.best_checkpoint.path)


def test_a_rewritten_state_is_read_instead_of_the_snapshot(experiment, tmp_path):
    copy = str(tmp_path / "rewritten")
    shutil.copytree(experiment, copy)
    (state_path,) = glob.glob(os.path.join(copy, "experiment_state-*.json"))
    with open(state_path) as f:
        state = json.load(f)
    info = json.loads(state["trial_data"][0][0])
    info["experiment_tag"] = "rewritten"   # as another run (Ray's restore) saving this file
    state["trial_data"][0][0] = json.dumps(info)
    with open(state_path, "w") as f:
        json.dump(state, f)
    ea = ExperimentAnalysis(copy)
    assert ea.trials[0].experiment_tag == "rewritten"


def test_an_unreadable_snapshot_is_passed_over(experiment, tmp_path):
    copy = str(tmp_path / "damaged")
    shutil.copytree(experiment, copy)
    (snap,) = snapshot_files(copy)
    with open(snap, "r+b") as f:
        f.truncate(100)
    assert len(ExperimentAnalysis(copy).trials) == 8


def test_a_resumed_experiment_leaves_a_snapshot_of_its_new_state(tmp_path, no_prefect,
                                                                 monkeypatch):
    grid = run_irregular(str(tmp_path), name="resumed")
    path = grid.experiment_path
    assert grid.num_errors == 1
    resumed = Tuner.restore(path, irregular, restart_errored=True).fit()
    assert resumed.num_errors == 1   # it fails again: restarted, at its end
    ea = from_snapshot(path, monkeypatch)
    assert_same_analysis_rows(ea, without_snapshot(path, monkeypatch))


def assert_same_analysis_rows(a, b):
    assert [(t.trial_id, t.status, t.num_failures) for t in a.trials] == \
           [(t.trial_id, t.status, t.num_failures) for t in b.trials]
    assert_same_rows(a.dataframe(), b.dataframe())


def assert_same_rows(x, y):
    """Equal frames; the config's function compared by what it does (each read
    unpickles its own)."""
    assert [f(2) for f in x.pop("config/fn")] == [f(2) for f in y.pop("config/fn")]
    pd.testing.assert_frame_equal(x, y)


def test_memory_storage_keeps_and_reads_a_snapshot(no_prefect, monkeypatch):
    grid = run_irregular("memory://readback-test", name="in_memory")
    uri = "memory://readback-test/in_memory"
    assert grid.num_errors == 1
    assert_same_analysis(from_snapshot(uri, monkeypatch, default_metric="loss", default_mode="min"),
                         without_snapshot(uri, monkeypatch, default_metric="loss",
                                          default_mode="min"))


# ------------------------------------------------------------------ rows from the table
def reference_rows(path, metric=None, mode=None):
    """dataframe()'s rows as each trial's own frame gives them (the trial parsed alone)."""
    ea = ExperimentAnalysis(path)
    rows = []
    for trial in ea.trials:
        with open(os.path.join(trial.path, "result.json"), "rb") as f:
            df = _reader._frame_from_json_lines(f.read())
        idx = -1
        if mode and metric in df:
            col = pd.to_numeric(df[metric])
            if col.notna().any():   # (pandas raises on a column of nulls alone)
                idx = df.index.get_loc(col.idxmax() if mode == "max" else col.idxmin())
        row = df.iloc[idx].to_dict()
        row.update({f"config/{k}": v for k, v in trial.config.items()})
        del row["config/fn"]   # compared by what it does
        row["logdir"] = trial.trial_id
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("metric,mode", [(None, None), ("loss", "min"), ("loss", "max"),
                                         ("every3", "max"), ("nested/b/c", "min"),
                                         ("maybe", "min")])
def test_dataframe_rows_are_each_trials_own_frame_rows(experiment, monkeypatch, metric, mode):
    expected = reference_rows(experiment, metric, mode)
    for ea in (without_snapshot(experiment, monkeypatch), from_snapshot(experiment, monkeypatch)):
        got = ea.dataframe(metric, mode)
        assert [f(2) for f in got.pop("config/fn")] == [4] * len(got)
        assert sorted(got.columns) == sorted(expected.columns)
        pd.testing.assert_frame_equal(got[sorted(got.columns)], expected[sorted(expected.columns)])


RAY_FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "..", "shared", "fixtures", "ray-2.60")


def test_a_state_is_parsed_entry_by_entry_as_json_loads_parses_it(tmp_path, no_prefect):
    """``_layout.parse_state``: the same entries and the same rest as ``json.loads``, for
    the states Ray 2.60 wrote and for tunelib's; the rest is read once the entries are."""
    from tunelib import _layout

    states = glob.glob(os.path.join(RAY_FIXTURES, "*", "experiment_state-*.json"))
    assert len(run_irregular(str(tmp_path), "parsed")) == 8
    states += glob.glob(str(tmp_path / "parsed" / "experiment_state-*.json"))
    assert len(states) >= 5
    for path in states:
        with open(path, "rb") as f:
            raw = f.read()
        whole = json.loads(raw)
        state = _layout.parse_state(raw)
        assert not isinstance(state["trial_data"], list) and "runner_data" not in state
        assert list(state["trial_data"]) == whole["trial_data"] and state == dict(
            whole, trial_data=state["trial_data"])
    empty = b'{"trial_data": [], "runner_data": {"a": 1}, "stats": {}}'
    odd_order = b'{"runner_data": {"a": 1}, "trial_data": [[1, 2]]}'
    spaced = b' {\n "trial_data" : [ ["x", "y"] ,\n["z"] ] , "stats": {"start_time": 1.5} }\n'
    utf16 = '{"trial_data": [["é"]]}'.encode("utf-16")
    utf16_no_bom = '{"trial_data": [["é"]]}'.encode("utf-16-le")   # valid UTF-8 too
    bom = b"\xef\xbb\xbf" + spaced   # a state re-saved by an editor
    for raw in (empty, odd_order, spaced, utf16, utf16_no_bom, bom):
        state = _layout.parse_state(raw)
        state["trial_data"] = list(state["trial_data"])
        assert state == json.loads(raw)
    for damaged in (b'{"trial_data": [["x"] ["y"]]}', b'{"trial_data": [["x"], ["y"',
                    b'{"trial_data": [["x"]], "runner_data": {',
                    b'{"trial_data": [["x"],\f["y"]]}'):   # a form feed is no JSON space
        with pytest.raises(json.JSONDecodeError):
            list(_layout.parse_state(damaged)["trial_data"])


def test_a_damaged_state_is_named_when_read(tmp_path, no_prefect):
    run_irregular(str(tmp_path), "damaged")
    (path,) = glob.glob(str(tmp_path / "damaged" / "experiment_state-*.json"))
    for snapshot in glob.glob(str(tmp_path / "damaged" / ".tunelib-readback-*")):
        os.remove(snapshot)
    with open(path, "rb") as f:
        raw = f.read()
    for damaged in (raw[: len(raw) * 2 // 3],        # a disk that filled up mid-write
                    raw[:100] + b"\xff\xfe" + raw[102:]):   # not UTF-8
        with open(path, "wb") as f:
            f.write(damaged)
        with pytest.raises(tune.TuneError, match="experiment_state-.*is not valid JSON"):
            ExperimentAnalysis(str(tmp_path / "damaged"))
