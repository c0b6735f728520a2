"""What the driver keeps of an experiment: finished trials' statistics held packed (and
still read as Ray's), the controller let go of once fit() has ended, even while a
background recorder drains; the state streamed to disk entry by entry."""

import gc
import glob
import json
import os
import sys
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
    import pickle

    original = expected_analysis()
    packed = MetricAnalysis.packed(expected_analysis())
    through = packed.read_through()   # what a state entry is encoded from: it stays packed
    assert packed.is_packed and through.stats == original.stats
    assert through.ray_windows() == original.ray_windows()
    copied = pickle.loads(pickle.dumps(packed))   # a Trial pickled whole (a trainable's)
    assert copied.stats == original.stats and copied.windows == original.windows
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


class WatchEnded(tune.Callback):
    """At every step: how the driver holds each trial that has ended."""

    def __init__(self):
        self.held = {}

    def on_step_begin(self, iteration, trials, **info):
        for trial in trials:
            if trial.is_finished():
                self.held.setdefault(trial.trial_id, (
                    type(trial.metric_analysis).__name__, trial.metric_analysis.is_packed,
                    all(sys.intern(k) is k for k in trial.last_result)))


def test_an_ended_trial_is_held_small_from_its_end(tmp_path, monkeypatch):
    """Its statistics packed at once, not at the next save (thousands of trials end
    between two saves of a 10,000-trial state), its result's keys shared by all trials;
    read, they are Ray's as before."""
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")
    watch, keep = WatchEnded(), KeepTrials()
    grid = Tuner(five_losses, param_space={"lr": tune.grid_search([0.5] * 4)},
                 run_config=tune.RunConfig(name="held", storage_path=str(tmp_path), verbose=0,
                                           callbacks=[watch, keep])).fit()
    assert grid.num_errors == 0 and len(watch.held) == 4
    assert set(watch.held.values()) == {("_Later", True, True)}
    expected = expected_analysis()
    for trial in keep.trials:
        for key in ("loss", "nested/x"):
            assert trial.metric_analysis.stats[key] == expected.stats[key]
        assert trial.last_result["done"] is True and trial.last_result["training_iteration"] == 7


def test_finished_entries_live_in_a_temporary_file(monkeypatch):
    import tempfile

    from tunelib._finished_entries import FinishedEntries

    for broken_tmp in (False, True):
        if broken_tmp:   # a temporary directory that cannot be written: kept in memory
            def refuse(*args, **kwargs):
                raise OSError(30, "Read-only file system")
            monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
        entries = FinishedEntries()
        entry = json.dumps({"trial_id": "t1", "stats": list(range(500))})
        entries.put("t1", ("TERMINATED", 1), entry)
        entries.put("t2", ("ERROR", 2), "[2]")
        assert entries.get("t1", ("TERMINATED", 1)) == entry
        assert entries.get("t1", ("TERMINATED", 3)) is None   # the trial changed since
        assert entries.get("t3", ("TERMINATED", 1)) is None
        entries.put("t1", ("TERMINATED", 3), "[1]")
        assert (entries.get("t1", ("TERMINATED", 3)), entries.get("t2", ("ERROR", 2))) == (
            "[1]", "[2]")
        assert len(entries) == 2
        entries.close()
        assert entries.get("t2", ("ERROR", 2)) is None and len(entries) == 0


def test_finished_entries_go_to_memory_when_the_temporary_directory_fills_up(
        monkeypatch, tmp_path, caplog):
    """What was written stays readable or is encoded again (``get`` answers None); later
    entries are kept in memory."""
    import errno
    import io
    import tempfile

    from tunelib._finished_entries import FinishedEntries

    class FillsUp(io.BufferedRandom):
        room = 2

        def write(self, data):
            if FillsUp.room == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            FillsUp.room -= 1
            return super().write(data)

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kw: FillsUp(
        io.FileIO(str(tmp_path / "spill"), "w+b")))
    entries = FinishedEntries()
    for k in range(4):
        entries.put(f"t{k}", k, f"[{k}]")
    assert "could not be written" in caplog.text and "No space left" in caplog.text
    assert [entries.get(f"t{k}", k) for k in range(4)] == [None, None, "[2]", "[3]"]
    entries.put("t0", 0, "[0]")
    assert entries.get("t0", 0) == "[0]"
