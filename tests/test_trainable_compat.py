"""``tune.Trainable`` behaves as Ray 2.60's (issue 13, item 5), used directly as on Ray's
Trainable page (``t = MyTrainable(config); t.train(); saved = t.save(dir); t.restore(saved)``)
and through ``Tuner.fit()``.

Ray 2.60 is the reference: every expectation here was checked against it side by side
(``save()`` returns a training result, ``restore()`` of it continues ``iteration``,
``reset()`` starts it again, a failed instance is stopped before the retry...).
"""

import os

import pytest

from tunelib import tune

# the keys of a class trainable's result, in Ray 2.60's order (a step returning {"x": ...})
RAY_RESULT_KEYS = ["x", "done", "training_iteration", "trial_id", "date", "timestamp",
                   "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
                   "time_since_restore", "iterations_since_restore"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A Trainable used on its own makes its logdir under ~/ray_results (as Ray's does)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


class Counter(tune.Trainable):
    def setup(self, config):
        self.x = config.get("start", 0)

    def step(self):
        self.x += 1
        return {"x": self.x}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": self.x}

    def load_checkpoint(self, checkpoint):
        self.x = checkpoint["x"]

    def reset_config(self, new_config):
        self.x = new_config.get("start", 0)
        return True


def test_train_fills_rays_automatic_fields_in_rays_order():
    """Ray: date, timestamp, pid, hostname, node_ip... also outside Tune."""
    t = Counter({"a": 1})
    result = t.train()
    assert list(result) == RAY_RESULT_KEYS
    assert result["training_iteration"] == 1 and result["trial_id"] == "default"
    assert result["pid"] == os.getpid() and result["config"] == {"a": 1}
    assert t.train()["iterations_since_restore"] == 2


def test_values_a_step_returns_for_automatic_fields_are_kept():
    """Ray: ``training_iteration``, ``time_this_iter_s`` and ``timestamp`` from step()
    win over the automatic ones."""
    class Explicit(tune.Trainable):
        def step(self):
            return {"training_iteration": 100, "time_this_iter_s": 2.5, "timestamp": 7}

    t = Explicit()
    t.train()
    result = t.train()
    assert result["training_iteration"] == 100 and t.iteration == 2
    assert result["timestamp"] == 7 and result["time_total_s"] == 5.0


def test_save_returns_the_checkpoint_with_the_last_result(tmp_path):
    """Ray: save() returns a training result (``.checkpoint``, ``.metrics``), not a str."""
    t = Counter()
    t.train()
    last = t.train()
    saved = t.save(str(tmp_path / "ckpt"))
    assert isinstance(saved.checkpoint, tune.Checkpoint)
    assert saved.checkpoint.path == str(tmp_path / "ckpt")
    assert saved.metrics == last
    assert os.listdir(tmp_path / "ckpt") == ["_dict_checkpoint.pkl"]


def test_restore_what_save_returned_continues_the_iteration_count(tmp_path):
    """Ray: restore(t.save(...)) brings back the state and ``iteration`` (2, not 0)."""
    t = Counter()
    t.train()
    t.train()
    saved = t.save(str(tmp_path / "ckpt"))
    other = Counter()
    other.restore(saved)
    assert other.x == 2 and other.iteration == 2
    result = other.train()
    assert result["training_iteration"] == 3 and result["iterations_since_restore"] == 1


def test_restore_from_a_directory_or_checkpoint_restores_state_but_not_progress(tmp_path):
    """Ray: a bare path or tune.Checkpoint carries no result, so ``iteration`` is 0."""
    t = Counter()
    t.train()
    t.save(str(tmp_path / "ckpt"))
    by_path, by_checkpoint = Counter(), Counter()
    by_path.restore(str(tmp_path / "ckpt"))
    by_checkpoint.restore(tune.Checkpoint.from_directory(str(tmp_path / "ckpt")))
    assert (by_path.x, by_path.iteration) == (1, 0)
    assert (by_checkpoint.x, by_checkpoint.iteration) == (1, 0)


def test_restore_from_a_missing_checkpoint_raises(tmp_path):
    """Ray: ValueError, the checkpoint "does not exist"."""
    with pytest.raises(ValueError, match="does not exist"):
        Counter().restore(str(tmp_path / "nowhere"))


def test_save_checkpoint_returning_another_path_is_an_error(tmp_path):
    class Elsewhere(Counter):
        def save_checkpoint(self, checkpoint_dir):
            return str(tmp_path)

    with pytest.raises(ValueError, match="save_checkpoint"):
        Elsewhere().save(str(tmp_path / "ckpt"))


def test_reset_starts_the_iteration_count_again():
    """Ray: a successful reset() (reuse_actors) sets ``iteration`` back to 0."""
    t = Counter()
    t.train()
    t.train()
    assert t.reset({"start": 10}) is True
    assert t.iteration == 0 and t.config == {"start": 10} and t.x == 10
    assert t.train()["training_iteration"] == 1


def test_reset_without_reset_config_says_no():
    class NoReset(Counter):
        def reset_config(self, new_config):
            return False

    assert NoReset().reset({"start": 1}) is False


def test_export_model_calls_export_model_hook_with_a_list_and_the_logdir():
    """Ray: export_model("fmt") → _export_model(["fmt"], logdir); the default exports
    nothing ({})."""
    calls = []

    class Exporting(Counter):
        def _export_model(self, export_formats, export_dir):
            calls.append((export_formats, export_dir))
            return {"model": export_dir}

    t = Exporting()
    assert t.export_model("model") == {"model": t.logdir}
    assert t.export_model(["onnx"], "/somewhere") == {"model": "/somewhere"}
    assert calls == [(["model"], t.logdir), (["onnx"], "/somewhere")]
    assert Counter().export_model(["model"]) == {}


def test_train_buffered_collects_results_until_time_length_or_done():
    """Ray: at least one result; stops at ``max_buffer_length`` or a done result."""
    t = Counter()
    assert len(t.train_buffered(0)) == 1
    assert [r["x"] for r in t.train_buffered(60, max_buffer_length=3)] == [2, 3, 4]

    class StopsAtTwo(Counter):
        def step(self):
            return dict(super().step(), done=self.x == 2)

    assert [r["x"] for r in StopsAtTwo().train_buffered(60)] == [1, 2]


def test_get_auto_filled_metrics_and_its_debug_subset():
    t = Counter({"a": 1})
    filled = t.get_auto_filled_metrics()
    assert list(filled) == RAY_RESULT_KEYS[3:]
    assert filled["time_this_iter_s"] is None and filled["iterations_since_restore"] == 0
    debug = t.get_auto_filled_metrics(debug_metrics_only=True)
    assert list(debug) == ["trial_id", "date", "timestamp", "pid", "hostname", "node_ip",
                           "config"]


def test_get_state_and_resource_help_as_in_ray():
    t = Counter()
    last = t.train()
    assert t.get_state() == {"iteration": 1, "timesteps_total": None,
                             "time_total": last["time_total_s"], "episodes_total": None,
                             "last_result": last, "ray_version": "2.60.0"}
    assert Counter.resource_help({}) == ""


def test_outside_tune_the_logdir_is_a_new_directory_under_ray_results(tmp_path):
    """Ray: ~/ray_results/<date><random>; trial id and name are "default", no resources."""
    t = Counter()
    assert os.path.dirname(t.logdir) == str(tmp_path / "home" / "ray_results")
    assert os.path.isdir(t.logdir) and t.logdir != Counter().logdir
    assert (t.trial_id, t.trial_name, t.trial_resources) == ("default", "default", None)


# ------------------------------------------------------------------ through Tuner.fit()


class FailsOnceAtTwo(tune.Trainable):
    def setup(self, config):
        self.x = 0

    def step(self):
        if self.iteration == 1 and not os.path.exists(self.config["marker"]):
            open(self.config["marker"], "w").close()
            raise RuntimeError("injected failure")
        self.x += 1
        return {"x": self.x, "iteration_before": self.iteration, "done": self.x == 3}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": self.x}

    def load_checkpoint(self, checkpoint):
        self.x = checkpoint["x"]

    def cleanup(self):
        with open(self.config["log"], "a") as f:
            f.write(f"cleanup after x={self.x}\n")


def test_a_failed_instance_is_cleaned_up_before_the_retry_which_continues_the_count(
        storage_dir, tmp_path):
    """Ray stops (cleanup()) the failed trial's instance; the retry restores the last
    checkpoint with its iteration (Ray: training_iteration 1, 2, 3, not 1, 1, 2)."""
    log = tmp_path / "cleanup.log"
    result = tune.Tuner(
        FailsOnceAtTwo,
        param_space={"marker": str(tmp_path / "failed"), "log": str(log)},
        run_config=tune.RunConfig(
            name="retry", storage_path=storage_dir, verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1)),
    ).fit()[0]
    assert result.error is None
    assert log.read_text().splitlines() == ["cleanup after x=1", "cleanup after x=3"]
    frame = result.metrics_dataframe
    assert list(frame["training_iteration"]) == [1, 2, 3]
    assert list(frame["iteration_before"]) == [0, 1, 2]


class Reports(tune.Trainable):
    def step(self):
        return {"iteration_before": self.iteration, "done": self.iteration + 1 == 2}

    def reset_config(self, new_config):
        return True


def test_reused_instances_start_each_trial_at_iteration_zero_with_rays_fields(storage_dir):
    """Ray: with reuse_actors one instance serves trial after trial, reset() each time;
    every result carries Ray's automatic fields."""
    grid = tune.Tuner(
        Reports,
        param_space={"i": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="reuse", storage_path=storage_dir, verbose=0),
    ).fit()
    frames = [r.metrics_dataframe for r in grid]
    assert [list(f["iteration_before"]) for f in frames] == [[0, 1], [0, 1]]
    assert frames[0]["pid"][0] == frames[1]["pid"][0]
    for column in ("date", "timestamp", "pid", "hostname", "node_ip"):
        assert column in frames[0]
