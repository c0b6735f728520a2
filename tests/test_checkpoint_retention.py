"""CheckpointConfig retention, end to end: which checkpoint dirs stay on storage, what
``Result.best_checkpoints`` / ``Result.checkpoint`` / ``get_best_checkpoint`` return after
``Tuner.fit``, and the same lists read back by ``ExperimentAnalysis`` and
``Tuner.restore().get_results()``, or every dir by ``Result.from_path`` (issue 13, item 7).

The end-to-end expectations were observed on Ray 2.60 running the same trainable: a
function that reports ``losses[i]`` (as ``loss``) with a checkpoint at every step ``i``.
The rules themselves, and the PBT run, are checked against Ray's ``_CheckpointManager``
transcribed (``RayCheckpointManager``).
"""

import glob
import json
import math
import os
import random
import tempfile

import pytest

from tunelib import _retention, tune
from tunelib.config import CheckpointConfig
from tunelib.schedulers import PopulationBasedTraining

slow = pytest.mark.slow

LOSSES = [2, 1, 0, 1, 2]


@pytest.fixture(autouse=True)
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def report_losses(config):
    """Step ``i`` reports ``{"i": i, "loss": losses[i]}`` (no loss for None; nested under
    ``nest`` too when asked) with a checkpoint; resumes after the checkpoint's step; fails
    once at step ``fail_at`` when a ``marker`` path is given."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                start = json.load(f)["i"] + 1
    for i in range(start, len(config["losses"])):
        if i == config.get("fail_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("injected failure")
        loss = config["losses"][i]
        metrics = {"i": i}
        if loss is not None:
            metrics["loss"] = loss
        if config.get("nested"):
            metrics["nest"] = {"loss": loss}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"i": i}, f)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def fit(tmp_path, losses=LOSSES, name="exp", **checkpoint_config):
    config = {"losses": losses}
    config.update(checkpoint_config.pop("config", {}))
    grid = tune.Tuner(
        report_losses,
        param_space=config,
        run_config=tune.RunConfig(
            name=name, storage_path=str(tmp_path), verbose=0,
            checkpoint_config=tune.CheckpointConfig(**checkpoint_config),
        ),
    ).fit()
    assert len(grid) == 1 and grid.num_errors == 0
    return grid


def names(pairs):
    """``checkpoint_000003`` -> 3, for each ``(Checkpoint, metrics)``."""
    return [int(os.path.basename(c.path)[len("checkpoint_"):]) for c, _ in pairs]


def on_disk(result):
    return sorted(int(os.path.basename(p)[len("checkpoint_"):])
                  for p in glob.glob(os.path.join(result.path, "checkpoint_*")))


def index(checkpoint):
    return int(os.path.basename(checkpoint.path)[len("checkpoint_"):])


def read_back(tmp_path, name="exp"):
    """The Result of the single trial as ExperimentAnalysis and Tuner.restore read it."""
    path = os.path.join(str(tmp_path), name)
    via_analysis = tune.ResultGrid(tune.ExperimentAnalysis(path))[0]
    via_restore = tune.Tuner.restore(path, report_losses).get_results()[0]
    return via_analysis, via_restore


SCORED = dict(num_to_keep=2, checkpoint_score_attribute="loss", checkpoint_score_order="min")


# ------------------------------------------------------------------ by score
@slow
def test_best_checkpoints_are_the_two_best_worst_first_and_a_tie_goes_to_the_newer(tmp_path):
    """Ray: losses 2,1,0,1,2 with num_to_keep=2, loss/min: best_checkpoints lists
    checkpoint_000003 (loss 1, the newer of the tie) then checkpoint_000002 (loss 0);
    Result.checkpoint is checkpoint_000004, which stays on storage (the latest always
    does) but is not among the best; dirs 2, 3, 4 remain."""
    result = fit(tmp_path, **SCORED)[0]
    assert names(result.best_checkpoints) == [3, 2]
    assert [m["loss"] for _, m in result.best_checkpoints] == [1, 0]
    assert [m["i"] for _, m in result.best_checkpoints] == [3, 2]
    assert index(result.checkpoint) == 4
    assert on_disk(result) == [2, 3, 4]


@slow
def test_best_checkpoints_carry_the_reported_result(tmp_path):
    """Ray: each best checkpoint comes with the full result it was reported with, nested
    (``config`` a dict, ``checkpoint_dir_name`` its own dir)."""
    result = fit(tmp_path, **SCORED)[0]
    for ckpt, metrics in result.best_checkpoints:
        assert metrics["checkpoint_dir_name"] == os.path.basename(ckpt.path)
        assert metrics["config"] == {"losses": LOSSES}
        assert metrics["training_iteration"] == metrics["i"] + 1


@slow
def test_experiment_analysis_and_restore_read_the_same_best_checkpoints(tmp_path):
    """Ray: ExperimentAnalysis(path) and Tuner.restore(path).get_results() give the same
    best_checkpoints (3 then 2) and Result.checkpoint (4) as fit() did."""
    fit(tmp_path, **SCORED)
    for result in read_back(tmp_path):
        assert names(result.best_checkpoints) == [3, 2]
        assert [m["loss"] for _, m in result.best_checkpoints] == [1, 0]
        assert index(result.checkpoint) == 4


@slow
def test_experiment_state_records_the_best_checkpoints_and_the_latest(tmp_path):
    """tunelib's runtime JSON holds what Ray pickles: the best list, worst first, and the
    latest checkpoint, which is kept on storage though it is not among the best."""
    fit(tmp_path, **SCORED)
    state_file = glob.glob(os.path.join(str(tmp_path), "exp", "experiment_state-*.json"))[0]
    with open(state_file) as f:
        _, runtime = json.load(f)["trial_data"][0]
    runtime = json.loads(runtime)
    assert [c["dir_name"] for c in runtime["best_checkpoints"]] == [
        "checkpoint_000003", "checkpoint_000002"]
    assert [c["metrics"]["loss"] for c in runtime["best_checkpoints"]] == [1, 0]
    assert runtime["latest_checkpoint_result"]["dir_name"] == "checkpoint_000004"
    assert runtime["latest_checkpoint_result"]["metrics"]["loss"] == 2


@slow
def test_result_from_path_lists_every_checkpoint_dir_oldest_first(tmp_path):
    """Ray: Result.from_path cannot rank, so it lists every checkpoint dir in index order
    (2, 3, 4, the latest included), each with its flattened result row."""
    result = tune.Result.from_path(fit(tmp_path, **SCORED)[0].path)
    assert names(result.best_checkpoints) == [2, 3, 4]
    assert [m["loss"] for _, m in result.best_checkpoints] == [0, 1, 2]
    assert result.best_checkpoints[0][1]["config/losses"] == LOSSES
    assert index(result.checkpoint) == 4
    assert index(result.get_best_checkpoint("i", "max")) == 4


@slow
def test_get_best_checkpoint_chooses_among_the_best_checkpoints_only(tmp_path):
    """Ray: get_best_checkpoint picks from best_checkpoints, so by loss/max it returns 3
    (not the latest, 4, whose loss is 2), and by training_iteration/max also 3; the same
    from Result, ExperimentAnalysis.get_best_checkpoint and get_last_checkpoint."""
    grid = fit(tmp_path, **SCORED)
    result = grid[0]
    assert index(result.get_best_checkpoint("loss", "min")) == 2
    assert index(result.get_best_checkpoint("loss", "max")) == 3
    assert index(result.get_best_checkpoint("training_iteration", "max")) == 3
    ea = tune.ExperimentAnalysis(os.path.join(str(tmp_path), "exp"))
    trial = ea.trials[0]
    assert index(ea.get_best_checkpoint(trial, "loss", "min")) == 2
    assert index(ea.get_best_checkpoint(trial, "loss", "max")) == 3
    assert index(ea.get_last_checkpoint(trial)) == 3


@slow
def test_an_unknown_metric_raises_as_in_ray(tmp_path):
    """Ray: Result.get_best_checkpoint("no_such_metric", "min") raises RuntimeError
    "Invalid metric name no_such_metric! ..."; ExperimentAnalysis.get_best_checkpoint
    raises KeyError('no_such_metric')."""
    result = fit(tmp_path, **SCORED)[0]
    with pytest.raises(RuntimeError, match="Invalid metric name no_such_metric"):
        result.get_best_checkpoint("no_such_metric", "min")
    ea = tune.ExperimentAnalysis(os.path.join(str(tmp_path), "exp"))
    with pytest.raises(KeyError, match="no_such_metric"):
        ea.get_best_checkpoint(ea.trials[0], "no_such_metric", "min")


@slow
def test_get_best_checkpoint_without_any_checkpoint_raises(tmp_path):
    """Ray: a trial that kept no checkpoint has best_checkpoints == [] after fit(), and
    Result.get_best_checkpoint raises RuntimeError "No checkpoint exists in the trial
    directory!" (before it looks at the mode)."""
    def no_checkpoints(config):
        tune.report({"loss": 1.0})

    result = tune.Tuner(
        no_checkpoints,
        run_config=tune.RunConfig(name="none", storage_path=str(tmp_path), verbose=0),
    ).fit()[0]
    assert result.best_checkpoints == [] and result.checkpoint is None
    with pytest.raises(RuntimeError, match="No checkpoint exists"):
        result.get_best_checkpoint("loss", "best")


@slow
def test_max_order_keeps_the_older_of_tied_bests_out_of_order(tmp_path):
    """Ray, loss/max with num_to_keep=2 over 2,1,0,1,2: best_checkpoints is 0 then 4 (both
    loss 2, the newer ranks higher); only dirs 0 and 4 remain."""
    result = fit(tmp_path, num_to_keep=2, checkpoint_score_attribute="loss",
                 checkpoint_score_order="max")[0]
    assert names(result.best_checkpoints) == [0, 4]
    assert on_disk(result) == [0, 4]


@slow
def test_a_three_way_tie_keeps_the_newest(tmp_path):
    """Ray, losses 1,1,1,1,3 with num_to_keep=2, loss/min: best_checkpoints 2 then 3;
    dirs 2, 3 and the latest, 4, remain."""
    result = fit(tmp_path, losses=[1, 1, 1, 1, 3], **SCORED)[0]
    assert names(result.best_checkpoints) == [2, 3]
    assert on_disk(result) == [2, 3, 4]


@slow
def test_num_to_keep_one(tmp_path):
    """Ray, num_to_keep=1, loss/min over 2,1,0,1,2: best_checkpoints is just 2; dirs 2
    and the latest, 4, remain."""
    result = fit(tmp_path, num_to_keep=1, checkpoint_score_attribute="loss",
                 checkpoint_score_order="min")[0]
    assert names(result.best_checkpoints) == [2]
    assert on_disk(result) == [2, 4]
    assert index(result.checkpoint) == 4


@slow
def test_without_num_to_keep_every_checkpoint_is_listed_worst_first(tmp_path):
    """Ray, no num_to_keep, loss/min over 2,1,0,1,2: all five stay, listed by score worst
    first, ties newer-last: 0, 4, 1, 3, 2."""
    result = fit(tmp_path, checkpoint_score_attribute="loss", checkpoint_score_order="min")[0]
    assert names(result.best_checkpoints) == [0, 4, 1, 3, 2]
    assert on_disk(result) == [0, 1, 2, 3, 4]
    for via in read_back(tmp_path):
        assert names(via.best_checkpoints) == [0, 4, 1, 3, 2]


@slow
def test_nan_scores_rank_last(tmp_path):
    """Ray, loss/min over 2,NaN,0,1,3 with num_to_keep=2: best 3 then 2; dirs 2, 3, 4."""
    result = fit(tmp_path, losses=[2, math.nan, 0, 1, 3], **SCORED)[0]
    assert names(result.best_checkpoints) == [3, 2]
    assert on_disk(result) == [2, 3, 4]


# ------------------------------------------------------------------ by recency
@slow
def test_without_a_score_attribute_the_most_recent_are_kept_oldest_first(tmp_path):
    """Ray, num_to_keep=2 and no score attribute: best_checkpoints 3 then 4, only dirs 3
    and 4 remain; get_best_checkpoint("loss", "min") is 3."""
    result = fit(tmp_path, num_to_keep=2)[0]
    assert names(result.best_checkpoints) == [3, 4]
    assert on_disk(result) == [3, 4]
    assert index(result.get_best_checkpoint("loss", "min")) == 3
    for via in read_back(tmp_path):
        assert names(via.best_checkpoints) == [3, 4]


@slow
def test_a_nested_score_attribute_ranks_by_recency_as_in_ray(tmp_path):
    """Ray tests the unflattened result for the attribute, so "nest/loss" never ranks:
    with num_to_keep=2 the two most recent stay (3, 4), although loss 0 was at 2."""
    result = fit(tmp_path, num_to_keep=2, checkpoint_score_attribute="nest/loss",
                 checkpoint_score_order="min", config={"nested": True})[0]
    assert names(result.best_checkpoints) == [3, 4]
    assert on_disk(result) == [3, 4]


@slow
def test_checkpoints_without_the_attribute_are_appended_as_in_ray(tmp_path):
    """Ray appends a checkpoint whose result lacks the attribute after all others; under
    loss/max over 2,-,0,-,1 that leaves 3 (no loss) then 4 (loss 1) as the best, dirs 3
    and 4; Result.get_best_checkpoint("loss", "min") is then 4, the only one with a loss.
    Under loss/min a missing loss counts as the best: 1 then 3, dirs 1, 3, 4, and
    get_best_checkpoint("loss", ...) raises "Invalid metric name"."""
    result = fit(tmp_path, losses=[2, None, 0, None, 1], num_to_keep=2,
                 checkpoint_score_attribute="loss", checkpoint_score_order="max")[0]
    assert names(result.best_checkpoints) == [3, 4]
    assert on_disk(result) == [3, 4]
    assert index(result.get_best_checkpoint("loss", "min")) == 4
    result = fit(tmp_path, losses=[2, None, 0, None, 1], name="exp_min", **SCORED)[0]
    assert names(result.best_checkpoints) == [1, 3]
    assert on_disk(result) == [1, 3, 4]
    with pytest.raises(RuntimeError, match="Invalid metric name loss"):
        result.get_best_checkpoint("loss", "min")


# ------------------------------------------------------------------ across attempts
@slow
def test_a_retried_trial_ranks_the_checkpoints_of_every_attempt(tmp_path):
    """Ray: a trial that fails after reporting steps 0-2 and is retried (max_failures=1)
    from checkpoint 2 ends with the same lists as an uninterrupted one: best 3 then 2,
    dirs 2, 3, 4."""
    grid = tune.Tuner(
        report_losses,
        param_space={"losses": LOSSES, "fail_at": 3, "marker": str(tmp_path / "failed")},
        run_config=tune.RunConfig(
            name="exp", storage_path=str(tmp_path), verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(**SCORED),
        ),
    ).fit()
    result = grid[0]
    assert result.error is None and os.path.exists(tmp_path / "failed")
    assert names(result.best_checkpoints) == [3, 2]
    assert on_disk(result) == [2, 3, 4]
    for via in read_back(tmp_path):
        assert names(via.best_checkpoints) == [3, 2]


@slow
def test_a_resumed_trial_ranks_the_checkpoints_of_every_run(tmp_path):
    """Ray: a trial that errored after steps 0-2, resumed with
    Tuner.restore(resume_errored=True).fit(), ends with best 3 then 2, dirs 2, 3, 4."""
    marker = str(tmp_path / "failed")
    tune.Tuner(
        report_losses,
        param_space={"losses": LOSSES, "fail_at": 3, "marker": marker},
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(**SCORED)),
    ).fit()
    path = os.path.join(str(tmp_path), "exp")
    result = tune.Tuner.restore(path, report_losses, resume_errored=True).fit()[0]
    assert result.error is None
    assert names(result.best_checkpoints) == [3, 2]
    assert on_disk(result) == [2, 3, 4]
    for via in read_back(tmp_path):
        assert names(via.best_checkpoints) == [3, 2]


@slow
def test_restoring_a_finished_experiment_keeps_its_best_checkpoints(tmp_path):
    """Ray: Tuner.restore(path).fit() of a finished experiment changes nothing: the
    trial's best_checkpoints are still 3 then 2 in the state it writes again."""
    fit(tmp_path, **SCORED)
    path = os.path.join(str(tmp_path), "exp")
    result = tune.Tuner.restore(path, report_losses).fit()[0]
    assert names(result.best_checkpoints) == [3, 2]
    for via in read_back(tmp_path):
        assert names(via.best_checkpoints) == [3, 2]


# ------------------------------------------------------------------ the rules, against Ray's
class RayCheckpointManager:
    """Ray 2.60's ``_CheckpointManager.register_checkpoint`` and ``best_checkpoint_results``
    (ray/train/_internal/checkpoint_manager.py), transcribed: the reference the rules and
    the end-to-end runs are checked against. Checkpoints are ``(index, metrics)``."""

    def __init__(self, config):
        self.config = config
        self.results = []   # worst first
        self.latest = None

    def score(self, item):
        attr = self.config.checkpoint_score_attribute
        flat = _flatten(item[1])
        value = flat[attr] if attr in flat else float("-inf")
        score = (1.0 if self.config.checkpoint_score_order == "max" else -1.0) * value
        return (False, float("-inf")) if math.isnan(score) else (True, score)

    def register(self, item):
        self.latest = item
        attr = self.config.checkpoint_score_attribute
        if attr is not None and attr in item[1]:
            i = 0
            while i < len(self.results) and not self.score(self.results[i]) > self.score(item):
                i += 1
            self.results.insert(i, item)
        else:
            self.results.append(item)
        k = self.config.num_to_keep
        if k is not None:
            worst = [r for r in self.results[:-k] if r is not self.latest]
            self.results = [r for r in self.results if not any(r is w for w in worst)]

    @classmethod
    def replay(cls, registered, config):
        """(indexes kept on storage, indexes of best_checkpoints worst first)."""
        manager = cls(config)
        for item in registered:
            manager.register(item)
        k = config.num_to_keep
        best = manager.results if k is None else manager.results[-k:]
        return [i for i, _ in manager.results], [i for i, _ in best]


def _flatten(metrics, prefix=""):
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_rules_are_rays_for_any_sequence_of_scores():
    """Ray's manager, replayed over random sequences (ties, NaN, a missing or nested
    attribute, both orders, num_to_keep 1-3 or None), keeps the same checkpoints and
    lists the same best ones, in the same order, as tunelib's retention rules applied
    one checkpoint at a time."""
    rng = random.Random(0)
    for _ in range(3000):
        config = CheckpointConfig(
            num_to_keep=rng.choice([1, 2, 3, None]),
            checkpoint_score_attribute=rng.choice(["loss", "loss", "loss", "nest/loss", None]),
            checkpoint_score_order=rng.choice(["min", "max"]))
        registered = []
        for i in range(rng.randint(1, 9)):
            value = rng.choice([0, 1, 2, 3, math.nan, None])
            registered.append((i, {} if value is None else
                               rng.choice([{"loss": value}, {"nest": {"loss": value}}])))
        kept = []
        for item in registered:
            kept.append(item)
            keep = _retention.select_kept(kept, config)
            kept = [k for k in kept if k[0] in keep]
        expected_kept, expected_best = RayCheckpointManager.replay(registered, config)
        assert sorted(i for i, _ in kept) == sorted(expected_kept), (config, registered)
        assert [i for i, _ in _retention.best_checkpoints(kept, config)] == expected_best, (
            config, registered)


# ------------------------------------------------------------------ PBT
def pbt_steps(config):
    """12 steps adding ``lr`` to ``w`` (reported as ``score``), a checkpoint at each."""
    step, w = 0, 0.0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                step, w = json.load(f)
    while step < 12:
        step += 1
        w += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump([step, w], f)
            tune.report({"score": w, "step": step}, checkpoint=tune.Checkpoint.from_directory(d))


@slow
def test_pbt_trials_keep_num_to_keep_checkpoints_of_their_own(tmp_path):
    """Ray, PBT with num_to_keep=2 (by score/max): every trial, including those that
    exploited another's checkpoint, keeps its best 2 checkpoints (plus its latest) on
    storage, and its best_checkpoints are those 2, in its own dir. Checked against Ray's
    rules replayed over what each trial reported, whichever trials exploited whom."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  hyperparam_mutations={"lr": [0.5, 1.0, 2.0]},
                                  metric="score", mode="max", synch=True)
    grid = tune.Tuner(
        pbt_steps,
        param_space={"lr": tune.grid_search([0.1, 0.5, 1.0, 2.0])},
        tune_config=tune.TuneConfig(scheduler=pbt),
        run_config=tune.RunConfig(
            name="pbt", storage_path=str(tmp_path), verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2,
                                                    checkpoint_score_attribute="score",
                                                    checkpoint_score_order="max")),
    ).fit()
    with open(os.path.join(str(tmp_path), "pbt", "pbt_global.txt")) as f:
        assert f.read().strip(), "no trial exploited another: the test needs one"
    restored = tune.ExperimentAnalysis(os.path.join(str(tmp_path), "pbt"))
    by_path = {r.path: r for r in tune.ResultGrid(restored)}
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        registered = [(int(r["checkpoint_dir_name"][len("checkpoint_"):]), r)
                      for r in rows if r.get("checkpoint_dir_name")]
        kept, best = RayCheckpointManager.replay(registered, CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="max"))
        assert on_disk(result) == sorted(kept)
        assert names(result.best_checkpoints) == best
        assert all(os.path.dirname(c.path) == result.path for c, _ in result.best_checkpoints)
        assert names(by_path[result.path].best_checkpoints) == best
