"""What the driver keeps of an experiment: finished trials' statistics held packed (and
still read as Ray's), the controller let go of once fit() has ended, even while a
background recorder drains; the state streamed to disk entry by entry."""

import gc
import glob
import json
import os
import weakref

import pyarrow.fs as pafs
import pytest

from tunelib import _layout, storage, tune
from tunelib._layout import MetricAnalysis, trials_from_state
from tunelib.controller import Controller
from tunelib.tune import Tuner


def five_losses(config):
    for i in range(7):
        tune.report({"loss": config["lr"] * (i + 1), "nested": {"x": i}})


class KeepTrials(tune.Callback):
    def __init__(self):
        self.trials = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials.append(trial)


def expected_analysis():
    expected = MetricAnalysis()
    for i in range(7):
        expected.update({"loss": 0.5 * (i + 1), "nested": {"x": i}, "training_iteration": i + 1})
    return expected


def test_finished_trials_keep_rays_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    keep = KeepTrials()
    grid = Tuner(five_losses, param_space={"lr": tune.grid_search([0.5, 0.5, 0.5])},
                 run_config=tune.RunConfig(name="stats", storage_path=str(tmp_path), verbose=0,
                                           callbacks=[keep])).fit()
    assert grid.num_errors == 0 and len(keep.trials) == 3
    expected = expected_analysis()
    (path,) = glob.glob(str(tmp_path / "stats" / "experiment_state-*.json"))
    with open(path) as f:
        state = json.load(f)
    saved = [t for t, _ in trials_from_state(state)]   # as Ray reads them: windows too
    for trial in keep.trials + saved:   # held packed since the state that recorded them
        assert trial.metric_analysis.stats["nested/x"]["last-5-avg"] == 4.0
        for key in ("loss", "nested/x"):
            assert trial.metric_analysis.stats[key] == expected.stats[key]
            assert trial.metric_analysis.windows[key] == expected.windows[key]
    assert [type(t.metric_analysis).__name__ for t in keep.trials] == ["_Later"] * 3


def test_a_packed_analysis_goes_on_as_the_original(tmp_path):
    original = expected_analysis()
    packed = MetricAnalysis.packed(expected_analysis())
    for analysis in (original, packed):
        analysis.update({"loss": 100.0, "training_iteration": 8})
    assert packed.stats == original.stats and packed.ray_windows() == original.ray_windows()


@pytest.mark.slow
def test_fit_lets_go_of_its_trials_while_the_recorder_drains(tmp_path, monkeypatch,
                                                            prefect_server):
    monkeypatch.setenv("TUNELIB_RECORD_WAIT_S", "0")   # hand the records to the background
    made = []
    init = Controller.__init__

    def remember(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Controller, "__init__", remember)
    grid = Tuner(five_losses, param_space={"lr": tune.grid_search([0.1, 0.2])},
                 run_config=tune.RunConfig(name="freed", storage_path=str(tmp_path),
                                           verbose=0)).fit()
    assert len(grid) == 2 and grid.num_errors == 0
    gc.collect()
    assert len(made) == 1 and made[0]() is None, gc.get_referrers(made[0]())


def test_the_state_is_written_whole_even_when_a_save_fails_midway(tmp_path, monkeypatch):
    """The state is streamed to a temporary file: a trial whose entry cannot be made
    leaves the previous state in place, never half a file."""
    path = str(tmp_path / "experiment_state-x.json")
    storage.write_text_parts(pafs.LocalFileSystem(), path,
                             _layout.experiment_state_parts(["[1]"], {}, 0.0))
    with open(path) as f:
        assert json.load(f)["trial_data"] == [[1]]

    def parts():
        yield '{"trial_data": ['
        raise RuntimeError("an entry that cannot be encoded")

    with pytest.raises(RuntimeError):
        storage.write_text_parts(pafs.LocalFileSystem(), path, parts())
    with open(path) as f:
        assert json.load(f)["trial_data"] == [[1]]
    assert os.listdir(tmp_path) == ["experiment_state-x.json"]
