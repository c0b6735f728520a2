"""Ray's logger callbacks: TensorBoard event files read back by TensorBoard's own reader
(tags, values, hparams as Ray 2.60 writes them), the JSON and CSV loggers accepted without
writing twice, ``LoggerCallback`` subclasses, ``pretty_print``.

Ray 2.60's events for ``_train`` below, read with the same reader: scalars
``ray/tune/{done, iterations_since_restore, loss, time_since_restore, time_this_iter_s}``
at steps 1..3 (the string metric left out), hparams ``{lr}`` with those tags as metrics
(for ``examples/quickstart.py`` also ``acc`` and ``should_checkpoint``: tunelib's files
hold the same tags).
"""

from __future__ import annotations

import glob
import os

import pytest
from _controller_fakes import checkpointed, run_controller

from tunelib import storage, tune
from tunelib.tune.logger import (
    CSVLoggerCallback,
    JsonLoggerCallback,
    LoggerCallback,
    TBXLoggerCallback,
    pretty_print,
)

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

RAY_TAGS = ["ray/tune/done", "ray/tune/iterations_since_restore", "ray/tune/loss",
            "ray/tune/time_since_restore", "ray/tune/time_this_iter_s"]


def _train(config):
    for i in range(3):
        tune.report({"loss": config["lr"] / (i + 1), "note": "text is not a scalar"})


def _fit(tmp_path, name, **run_config):
    return tune.Tuner(
        _train, param_space={"lr": tune.grid_search([0.1, 1.0])},
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0,
                                  **run_config)).fit()


def _read(trial_dir: str):
    reader = event_accumulator.EventAccumulator(trial_dir, size_guidance={"scalars": 0})
    reader.Reload()
    return reader


@pytest.fixture
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two trials run with Ray's JSON and CSV logger callbacks passed (and the default
    TensorBoard logger added)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELIB_DISABLE_PREFECT", "1")
        patch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
        return _fit(tmp_path_factory.mktemp("loggers"), "loggers",
                    callbacks=[JsonLoggerCallback(), CSVLoggerCallback()])


def test_default_loggers_write_event_files_tensorboard_reads(grid):
    from tensorboard.plugins.hparams import plugin_data_pb2

    for result in grid:
        assert len(glob.glob(os.path.join(result.path, "events.out.tfevents.*"))) == 1
        reader = _read(result.path)
        assert sorted(reader.Tags()["scalars"]) == RAY_TAGS
        lr = result.config["lr"]
        losses = [(e.step, e.value) for e in reader.Scalars("ray/tune/loss")]
        assert losses == [(i + 1, pytest.approx(lr / (i + 1))) for i in range(3)]
        content = reader.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]).session_start_info
        assert {k: v.number_value for k, v in start.hparams.items()} == {
            "lr": pytest.approx(lr)}
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/experiment"]).experiment
        assert sorted(m.name.tag for m in experiment.metric_infos) == RAY_TAGS


def test_json_and_csv_logger_callbacks_are_accepted_and_write_nothing_twice(grid):
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            assert len(f.read().splitlines()) == 3
        with open(os.path.join(result.path, "progress.csv")) as f:
            assert len(f.read().splitlines()) == 1 + 3


def test_auto_loggers_can_be_disabled_as_in_ray(tmp_path, no_prefect, monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    for result in _fit(tmp_path, "no_tbx"):
        assert glob.glob(os.path.join(result.path, "events.out.tfevents.*")) == []
        assert os.path.exists(os.path.join(result.path, "result.json"))


def test_events_reach_remote_storage_when_the_trial_ends(no_prefect, tmp_path):
    tune.Tuner(_train, param_space={"lr": 0.5},
               run_config=tune.RunConfig(name="remote", storage_path="memory:///tbx-test",
                                         verbose=0)).fit()
    fs, path = storage.get_fs_and_path("memory:///tbx-test/remote")
    [trial_dir] = storage.list_dir(fs, path, dirs_only=True)
    files = storage.list_dir(fs, storage.join(path, trial_dir))
    [events] = [f for f in files if f.startswith("events.out.tfevents.")]
    local = tmp_path / events
    local.write_bytes(storage.read_bytes(fs, storage.join(path, trial_dir, events)))
    assert [e.value for e in _read(str(tmp_path)).Scalars("ray/tune/loss")] == \
        pytest.approx([0.5, 0.25, 0.5 / 3])


def test_logger_callback_subclasses_get_rays_log_hooks(tmp_path):
    class Log(LoggerCallback):
        def __init__(self):
            self.events = []

        def log_trial_start(self, trial):
            self.events.append("start")

        def log_trial_result(self, iteration, trial, result):
            self.events.append(f"result {result['training_iteration']}")

        def log_trial_save(self, trial):
            self.events.append("save")

        def log_trial_end(self, trial, failed=False):
            self.events.append(f"end failed={failed}")

    ok, failing = Log(), Log()
    run_controller({"a": [checkpointed(loss=1.0), {"loss": 0.5}]}, tmp_path, callbacks=[ok])
    run_controller({"a": [{"loss": 1.0}, ValueError("boom")]}, tmp_path / "2",
                   callbacks=[failing])
    assert ok.events == ["start", "result 1", "save", "result 2", "end failed=False"]
    assert failing.events == ["start", "result 1", "end failed=True"]


def test_pretty_print_is_rays_yaml():
    result = {"loss": 0.25, "config": {"lr": 0.1}, "hist": [1, 2, 3, 4], "nested": {"a": 1},
              "skipped": None, "done": False}
    assert pretty_print(result) == "done: false\nhist: [1, 2, 3, 4]\nloss: 0.25\nnested:\n  a: 1\n"
    assert pretty_print(result, exclude={"hist", "nested"}) == "done: false\nloss: 0.25\n"


def test_a_passed_tbx_logger_is_not_added_twice(monkeypatch):
    from tunelib._callbacks import create_default_callbacks

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    passed = TBXLoggerCallback()
    default = create_default_callbacks([], verbose=0).callbacks
    explicit = create_default_callbacks([passed], verbose=0).callbacks
    assert [type(c) for c in default if isinstance(c, TBXLoggerCallback)] == [TBXLoggerCallback]
    assert [c for c in explicit if isinstance(c, TBXLoggerCallback)] == [passed]


def test_a_tbx_logger_pickles_with_the_tuner():
    """tuner.pkl keeps the run config's callbacks: the logger's configuration, not its
    open files or its writer thread."""
    import pickle

    restored = pickle.loads(pickle.dumps(TBXLoggerCallback()))
    assert isinstance(restored, TBXLoggerCallback) and restored._trial_writer == {}
