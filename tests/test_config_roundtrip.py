"""A trial's config comes back as the objects it was given (issue 14, items 2 and 7).

The experiment state and params.pkl hold the config pickled (cloudpickle, as Ray's), beside
Ray's JSON view in the state's ``config`` and in params.json; readers prefer the pickle and
fall back to the JSON where it cannot be loaded. A value that cannot be pickled is named by
its key path. numpy metrics are reported as Python numbers. Whole-line files: what a killed
or failed writer leaves after the last complete line goes before anything is appended.
"""

import base64
import dataclasses
import json
import logging
import pickle
import threading
import warnings

import numpy as np
import pyarrow.fs as pafs
import pytest

from tunelib import _layout, _pickling, _reader, tune
from tunelib._trial_writer import (
    FsBackend,
    LocalBackend,
    TrialWriter,
    complete_length,
    cut_back_to_complete_lines,
)
from tunelib.config import CheckpointConfig
from tunelib.result import Result
from tunelib.session import plain_numbers
from tunelib.trial import Trial


@dataclasses.dataclass(frozen=True)
class Point:
    a: int
    b: int


def _config():
    return {"t": (1, 2), "n": np.int64(4), "fn": np.tanh, "p": Point(1, 2),
            "nested": {"x": np.float32(0.5), "ids": [np.int64(1), (2, 3)]}}


def _state_of(*trials) -> dict:
    text = _layout.experiment_state(
        [_layout.trial_state(t, 0, CheckpointConfig()) for t in trials], {}, 0.0)
    return json.loads(text)


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_types(v) for v in value])
    return type(value).__name__


# ------------------------------------------------------------------ key paths
def test_unpicklable_value_is_named_by_its_key_path_and_type():
    config = {"lr": 0.1, "opt": {"lock": threading.Lock()}}
    with pytest.raises(TypeError, match=r"param_space\['opt'\]\['lock'\] holds a _thread\.lock"):
        _pickling.check_picklable(config)


def test_unpicklable_value_inside_a_list_is_named_by_its_index(tmp_path):
    with open(tmp_path / "log.txt", "w") as log:
        with pytest.raises(TypeError, match=r"config\['sinks'\]\[1\] holds a _io\.TextIOWrapper"):
            _pickling.check_picklable({"sinks": ["stdout", log]}, "config")


def test_lambdas_and_script_classes_pickle():
    # Ray cloudpickles configs: lambdas and classes defined in a script travel by value
    assert _pickling.unpicklable_path({"f": lambda x: x + 1, "p": Point(1, 2)}) is None
    assert _pickling.loads(_pickling.dumps({"f": lambda x: x + 1}))["f"](1) == 2


# ------------------------------------------------------------------ experiment state
def test_experiment_state_round_trips_the_config_objects():
    trial = Trial("f", trial_id="abc_00000", config=_config())
    (restored, _), = _layout.trials_from_state(_state_of(trial))
    assert restored.config == trial.config
    assert _types(restored.config) == _types(trial.config)


def test_experiment_state_round_trips_a_lambda():
    trial = Trial("f", trial_id="abc_00000", config={"act": lambda x: 2 * x})
    (restored, _), = _layout.trials_from_state(_state_of(trial))
    assert restored.config["act"](3) == 6


def test_experiment_state_config_stays_rays_json_view():
    trial = Trial("f", trial_id="abc_00000", config=_config())
    info = json.loads(_state_of(trial)["trial_data"][0][0])
    assert info["config"] == {"t": [1, 2], "n": 4, "fn": "<ufunc 'tanh'>", "p": "Point(a=1, b=2)",
                              "nested": {"x": 0.5, "ids": [1, [2, 3]]}}


def test_last_result_config_comes_back_as_the_trials_objects():
    config = _config()
    trial = Trial("f", trial_id="abc_00000", config=config,
                  last_result={"loss": 1.0, "config": config, "training_iteration": 3})
    (restored, _), = _layout.trials_from_state(_state_of(trial))
    assert _types(restored.last_result["config"]) == _types(config)
    assert restored.last_result["loss"] == 1.0


def test_last_result_config_reported_by_the_trials_process_comes_back_as_objects():
    # the result's config is the worker's copy: its lambda's repr has another address
    trial = Trial("f", trial_id="abc_00000", config={"act": lambda x: x + 1},
                  last_result={"config": {"act": lambda x: x + 1}, "training_iteration": 1})
    (restored, _), = _layout.trials_from_state(_state_of(trial))
    assert restored.last_result["config"]["act"](1) == 2


def test_last_result_of_an_earlier_config_keeps_its_json_view():
    # PBT changed the config after the last result: that result's config is another one
    trial = Trial("f", trial_id="abc_00000", config={"lr": (0.2,)},
                  last_result={"config": {"lr": (0.1,)}, "training_iteration": 3})
    (restored, _), = _layout.trials_from_state(_state_of(trial))
    assert restored.config == {"lr": (0.2,)}
    assert restored.last_result["config"] == {"lr": [0.1]}


def test_state_without_pickled_configs_reads_the_json_view():
    # Ray's experiment_state has no "tunelib" bookkeeping
    trial = Trial("f", trial_id="abc_00000", config={"t": (1, 2)})
    state = _state_of(trial)
    runtime = json.loads(state["trial_data"][0][1])
    del runtime["tunelib"]
    state["trial_data"][0][1] = json.dumps(runtime)
    (restored, _), = _layout.trials_from_state(state)
    assert restored.config == {"t": [1, 2]}


def test_unloadable_pickled_config_falls_back_to_the_json_view_with_one_warning():
    # a config whose value comes from a module this process cannot import
    unloadable = base64.b64encode(b"cno_such_module_here\nThing\n.").decode()
    trials = [Trial("f", trial_id=f"abc_0000{i}", config={"t": (1, 2)}) for i in range(2)]
    state = _state_of(*trials)
    for pair in state["trial_data"]:
        runtime = json.loads(pair[1])
        runtime["tunelib"]["config_pickle"] = unloadable
        pair[1] = json.dumps(runtime)
    with pytest.warns(RuntimeWarning, match="no_such_module_here") as caught:
        restored = _layout.trials_from_state(state)
    assert len(caught) == 1 and "2 trial(s)" in str(caught[0].message)
    assert [t.config for t, _ in restored] == [{"t": [1, 2]}] * 2


# ------------------------------------------------------------------ trial dirs
def test_params_pkl_holds_the_objects_and_params_json_rays_view(tmp_path):
    writer = TrialWriter(LocalBackend(str(tmp_path)))
    writer.write_params({"act": lambda x: x + 1, "t": (1, 2), "n": np.int64(3)})
    with open(tmp_path / "params.json") as f:
        assert json.load(f)["t"] == [1, 2]
    with open(tmp_path / "params.pkl", "rb") as f:
        assert pickle.load(f)["act"](1) == 2


def test_reader_prefers_params_pkl_to_params_json(tmp_path):
    TrialWriter(LocalBackend(str(tmp_path))).write_params({"t": (1, 2), "n": np.int64(3)})
    data = _reader.read_trial_dir(pafs.LocalFileSystem(), str(tmp_path))
    assert _types(data.config) == {"t": ("tuple", ["int", "int"]), "n": "int64"}


def test_reader_falls_back_to_params_json_when_params_pkl_does_not_unpickle(tmp_path):
    TrialWriter(LocalBackend(str(tmp_path))).write_params({"t": (1, 2)})
    (tmp_path / "params.pkl").write_bytes(b"cno_such_module_here\nThing\n.")
    data = _reader.read_trial_dir(pafs.LocalFileSystem(), str(tmp_path))
    assert data.config == {"t": [1, 2]}


# ------------------------------------------------------------------ numpy metrics
def test_numpy_scalars_are_reported_as_python_numbers():
    metrics = plain_numbers({"acc": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True),
                             "precise": np.longdouble(0.25), "inner": {"k": np.uint8(7)},
                             "curve": np.arange(2)})
    assert _types(metrics) == {"acc": "float", "n": "int", "ok": "bool", "precise": "float",
                               "inner": {"k": "int"}, "curve": "ndarray"}
    assert metrics["acc"] == 0.5 and metrics["inner"]["k"] == 7


def numpy_metrics(config):
    tune.report({"acc": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True),
                 "precise": np.longdouble(0.25)})


@pytest.mark.slow
def test_numpy_metrics_come_back_as_numbers(storage_dir, monkeypatch):
    # Ray's fit() results keep the numpy objects (they never leave memory) and its
    # Result.from_path reads numbers; tunelib gives numbers in both (np.longdouble, which
    # has no JSON, too)
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    grid = tune.Tuner(numpy_metrics, run_config=tune.RunConfig(
        name="numpy", storage_path=storage_dir, verbose=0)).fit()
    expected = {"acc": ("float", 0.5), "n": ("int", 3), "ok": ("bool", True),
                "precise": ("float", 0.25)}
    for metrics in (grid[0].metrics, Result.from_path(grid[0].path).metrics):
        assert {k: (type(metrics[k]).__name__, metrics[k]) for k in expected} == expected


# ------------------------------------------------------------------ whole lines
def test_complete_length_ends_at_the_last_newline():
    assert complete_length(b'{"a": 1}\n{"a": 2}\n') == 18
    assert complete_length(b'{"a": 1}\n{"a": ') == 9
    assert complete_length(b'{"a": ') == 0


def test_complete_length_of_csv_rows_ignores_newlines_inside_quoted_fields():
    whole = b'note,i\r\n"two\nlines",1\r\n'
    assert complete_length(whole, csv_rows=True) == len(whole)
    assert complete_length(whole + b'"half\nof', csv_rows=True) == len(whole)
    doubled = b'note,i\r\n"a ""quoted""\nword",1\r\n'
    assert complete_length(doubled + b'"b', csv_rows=True) == len(doubled)


def test_cut_back_removes_a_half_written_line(tmp_path):
    path = tmp_path / "result.json"
    path.write_bytes(b'{"i": 1}\n{"i": 2}\n{"i"')
    assert cut_back_to_complete_lines(None, str(path)) == 4
    assert path.read_bytes() == b'{"i": 1}\n{"i": 2}\n'
    assert cut_back_to_complete_lines(None, str(path)) == 0
    assert cut_back_to_complete_lines(None, str(tmp_path / "missing.json")) == 0


@pytest.mark.parametrize("backend", ["local", "fs"])
def test_an_attempt_appends_after_the_last_complete_line(tmp_path, backend):
    (tmp_path / "result.json").write_bytes(b'{"i": 1}\n{"i": 2, "lo')
    (tmp_path / "progress.csv").write_bytes(b'i\r\n1\r\n2')
    store = LocalBackend(str(tmp_path)) if backend == "local" else \
        FsBackend(pafs.LocalFileSystem(), str(tmp_path), flush_period_s=0)
    writer = TrialWriter(store)
    writer.append_result({"i": 3})
    writer.close()
    assert (tmp_path / "result.json").read_bytes() == b'{"i": 1}\n{"i": 3}\n'
    assert (tmp_path / "progress.csv").read_bytes() == b"i\r\n1\r\n3\r\n"


def test_reader_warns_once_naming_file_and_line_of_a_truncated_last_line(tmp_path, caplog):
    (tmp_path / "result.json").write_bytes(b'{"i": 1}\n{"i": 2}\n{"i": 3, "lo')
    with caplog.at_level(logging.WARNING, logger="tunelib._reader"):
        data = _reader.read_trial_dir(pafs.LocalFileSystem(), str(tmp_path))
    assert list(data.dataframe["i"]) == [1, 2]
    (record,) = caplog.records
    assert f"line 3 of {tmp_path / 'result.json'}: it is cut short" in record.getMessage()


def test_reader_skips_a_corrupt_line_anywhere_with_one_warning(tmp_path, caplog):
    (tmp_path / "result.json").write_bytes(b'{"i": 1}\n{"i": 2, "lo{"i": 3}\n{"i": 4}\n')
    with caplog.at_level(logging.WARNING, logger="tunelib._reader"), warnings.catch_warnings():
        warnings.simplefilter("error")
        data = _reader.read_trial_dir(pafs.LocalFileSystem(), str(tmp_path))
    assert list(data.dataframe["i"]) == [1, 4] and data.last_result["i"] == 4
    (record,) = caplog.records
    assert f"line 2 of {tmp_path / 'result.json'}: not a JSON record" in record.getMessage()
