"""Ray Train's results (the "Inspecting Training Results" page), end to end: what
``Trainer.fit()`` returns, where it lives, and ``train.get_checkpoint()`` /
``train.get_context()`` outside a training function.

What Ray 2.60 (Train V2, its default) was observed to do, with two workers reporting
``{"loss", "epoch"}`` four times, with a checkpoint at epochs 0, 1 and 3 and without one at
epoch 2: ``result.metrics == {"loss": 0.25, "epoch": 3}``; ``metrics_dataframe`` 3 rows x
2 columns; ``best_checkpoints`` the three checkpoints with exactly those metrics; every
rank's files in each checkpoint directory; ``result.error`` None (``fit()`` raises
``WorkerGroupError``, a ``TrainingFailedError``, instead).
"""

import json
import math
import os
import tempfile

import pytest

from tunelib import train, tune
from tunelib.train import DataParallelTrainer, ScalingConfig, TrainingFailedError
from tunelib.train._result import (
    SESSION_FILLED_KEYS,
    best_checkpoints,
    checkpoint_score,
    rank_checkpoints,
)


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def reporting_loop(config):
    """Rank r reports {"loss", "epoch"} each epoch, with a checkpoint holding
    ``model_rank<r>.txt`` and ``shared.txt`` (its rank) at ``config["ckpt_epochs"]``."""
    rank = train.get_context().get_world_rank()
    for epoch in range(config.get("epochs", 4)):
        metrics = {"loss": 1.0 / (epoch + 1), "epoch": epoch}
        if epoch not in config["ckpt_epochs"]:
            train.report({**metrics, "free": True})
            continue
        with tempfile.TemporaryDirectory() as d:
            for name, text in ((f"model_rank{rank}.txt", str(epoch)), ("shared.txt", str(rank))):
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            train.report(metrics, checkpoint=train.Checkpoint.from_directory(d))


def _fit(tmp_path, ckpt_epochs=(0, 1, 3), checkpoint_config=None, name="run", **config):
    return DataParallelTrainer(
        reporting_loop,
        train_loop_config={"ckpt_epochs": list(ckpt_epochs), **config},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results"), name=name,
                                   checkpoint_config=checkpoint_config),
    ).fit()


def _epoch_of(checkpoint) -> int:
    with open(os.path.join(checkpoint.path, "model_rank0.txt")) as f:
        return int(f.read())


# --------------------------------------------------------------------------- Trainer.fit()


def test_metrics_are_those_reported_with_the_latest_checkpoint(tmp_path):
    """Ray: ``result.metrics`` is rank 0's dict passed with the last reported checkpoint,
    without Tune's automatic fields; a later report without a checkpoint is not in it."""
    result = _fit(tmp_path, ckpt_epochs=(0, 1, 3), epochs=4)
    assert result.metrics == {"loss": 0.25, "epoch": 3}
    assert _epoch_of(result.checkpoint) == 3
    assert isinstance(result, train.Result) and isinstance(result, tune.Result)

    later_free_report = _fit(tmp_path, ckpt_epochs=(0, 1), epochs=3, name="free_last")
    assert later_free_report.metrics == {"loss": 0.5, "epoch": 1}


def test_metrics_dataframe_has_one_row_per_checkpoint_with_the_reported_columns(tmp_path):
    """Ray: 3 rows x 2 columns (``loss``, ``epoch``) for this run; the free-floating report
    of epoch 2 and Tune's automatic fields are not there."""
    df = _fit(tmp_path).metrics_dataframe
    assert df.shape == (3, 2)
    assert list(df.columns) == ["loss", "epoch"]
    assert list(df["epoch"]) == [0, 1, 3]
    assert min(df["loss"]) == 0.25


def test_nested_metrics_stay_nested(tmp_path):
    """Ray: metrics are kept as reported (a nested dict stays one column of dicts)."""
    def nested_loop():
        with tempfile.TemporaryDirectory() as d:
            train.report({"val": {"loss": 0.5}}, checkpoint=train.Checkpoint.from_directory(d))

    result = DataParallelTrainer(
        nested_loop, scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results"))).fit()
    assert result.metrics == {"val": {"loss": 0.5}}
    assert list(result.metrics_dataframe.columns) == ["val"]


def test_a_run_without_checkpoints_has_no_metrics(tmp_path):
    """Ray: with only free-floating reports, ``metrics``, ``metrics_dataframe`` and
    ``checkpoint`` are None and ``best_checkpoints`` is empty."""
    result = _fit(tmp_path, ckpt_epochs=())
    assert result.metrics is None
    assert result.metrics_dataframe is None
    assert result.checkpoint is None
    assert result.best_checkpoints == []
    assert result.error is None


def test_best_checkpoints_pair_each_checkpoint_with_its_metrics(tmp_path):
    """Ray: ``best_checkpoints`` lists every checkpoint (oldest first without a score
    attribute) with exactly the metrics reported with it."""
    result = _fit(tmp_path)
    pairs = [(_epoch_of(c), m) for c, m in result.best_checkpoints]
    assert pairs == [(0, {"loss": 1.0, "epoch": 0}), (1, {"loss": 0.5, "epoch": 1}),
                     (3, {"loss": 0.25, "epoch": 3})]
    best = min(result.best_checkpoints, key=lambda c: c[1]["loss"])[0]
    assert best.path == result.checkpoint.path
    assert result.get_best_checkpoint("loss", "max").path == result.best_checkpoints[0][0].path


def test_num_to_keep_and_score_decide_best_checkpoints_the_latest_stays(tmp_path):
    """Ray (num_to_keep=2, score ``loss`` max, 4 checkpoints): ``best_checkpoints`` are the
    two kept by score, worst first (epochs 1, 0); the latest (epoch 3) stays on storage as
    ``result.checkpoint`` with ``metrics`` its own, and is not in ``metrics_dataframe``."""
    result = _fit(tmp_path, ckpt_epochs=(0, 1, 2, 3), checkpoint_config=train.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="loss", checkpoint_score_order="max"))
    assert [(_epoch_of(c), m["loss"]) for c, m in result.best_checkpoints] == [(1, 0.5), (0, 1.0)]
    assert list(result.metrics_dataframe["epoch"]) == [1, 0]
    assert _epoch_of(result.checkpoint) == 3 and result.metrics == {"loss": 0.25, "epoch": 3}
    on_storage = sorted(e for e in os.listdir(result.path) if e.startswith("checkpoint_"))
    assert len(on_storage) == 3


def test_a_checkpoint_merges_the_files_of_every_rank(tmp_path):
    """Ray: the checkpoints the workers pass in one round are merged into one directory on
    storage (tunelib: a file several ranks wrote is rank 0's)."""
    result = _fit(tmp_path)
    files = sorted(os.listdir(result.checkpoint.path))
    assert files == ["model_rank0.txt", "model_rank1.txt", "shared.txt"]
    with open(os.path.join(result.checkpoint.path, "shared.txt")) as f:
        assert f.read() == "0"


def test_path_is_the_trainers_run_directory_on_storage(tmp_path):
    """Ray documents ``result.path`` as ``TrainerName_<date>/TrainerName_<id>_00000_0_...``
    under ``storage_path``, with ``result.filesystem`` to reach it; the checkpoints are
    inside it."""
    storage_path = str(tmp_path / "results")
    result = DataParallelTrainer(
        reporting_loop, train_loop_config={"ckpt_epochs": [0], "epochs": 1},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=storage_path)).fit()
    experiment_dir, trial_dir = os.path.split(result.path)
    assert os.path.dirname(experiment_dir) == storage_path
    assert os.path.basename(experiment_dir).startswith("DataParallelTrainer_")
    assert trial_dir.startswith("DataParallelTrainer_") and "_00000_0_" in trial_dir
    assert result.filesystem.type_name == "local"
    assert os.path.dirname(result.checkpoint.path) == result.path


def test_result_from_path_reads_the_same_training_result(tmp_path):
    """Ray: ``train.Result.from_path(result.path)`` restores checkpoints and their metrics
    (not the error)."""
    result = _fit(tmp_path)
    restored = train.Result.from_path(result.path)
    assert type(restored) is train.Result
    assert restored.metrics == result.metrics
    assert restored.metrics_dataframe.equals(result.metrics_dataframe)
    assert [c.path for c, _ in restored.best_checkpoints] == [
        c.path for c, _ in result.best_checkpoints]
    assert restored.error is None


def test_result_from_path_of_a_missing_directory_raises(tmp_path):
    """Ray: RuntimeError naming the folder that does not exist."""
    with pytest.raises(RuntimeError, match="doesn't exist"):
        train.Result.from_path(str(tmp_path / "nope"))


def test_config_of_a_training_result_raises_as_in_ray(tmp_path):
    """Ray: ``ray.train.Result.config`` raises DeprecationWarning (a Tune-only property)."""
    result = _fit(tmp_path, ckpt_epochs=(0,), epochs=1)
    with pytest.raises(DeprecationWarning, match="only relevant in the context of Ray Tune"):
        result.config


def failing_loop():
    train.report({"loss": 1.0})
    raise ValueError("boom")


def test_a_failed_fit_raises_instead_of_returning_a_result(tmp_path):
    """Ray: ``fit()`` raises ``WorkerGroupError`` (a ``TrainingFailedError``) carrying the
    worker's traceback; no Result with ``error`` set is returned."""
    trainer = DataParallelTrainer(
        failing_loop, scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results")))
    with pytest.raises(TrainingFailedError, match="ValueError: boom") as info:
        trainer.fit()
    assert isinstance(info.value, train.WorkerGroupError)


# --------------------------------------------------------------------------- Tuner(trainer)


def test_a_trainer_tuned_by_a_tuner_keeps_tunes_result(tmp_path):
    """Ray 2.60 refuses ``Tuner(trainer)`` (TuneError "Improper 'run'") under Train V2;
    tunelib keeps Ray's earlier integration, where each trial's Result is Tune's: every
    report, with Tune's automatic fields."""
    trainer = DataParallelTrainer(
        reporting_loop, train_loop_config={"ckpt_epochs": [0, 1, 3]},
        scaling_config=ScalingConfig(num_workers=2))
    grid = tune.Tuner(trainer, run_config=tune.RunConfig(
        storage_path=str(tmp_path / "results"))).fit()
    result = grid[0]
    assert type(result) is tune.Result
    assert result.metrics["training_iteration"] == 4 and result.metrics["epoch"] == 3
    assert list(result.metrics_dataframe["epoch"]) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- outside a session


def test_train_get_checkpoint_outside_a_training_function_raises():
    """Ray: RuntimeError "`get_checkpoint` cannot be used outside of a Ray Train training
    function. ..." (Train V2's ``requires_train_worker``)."""
    with pytest.raises(RuntimeError, match="`get_checkpoint` cannot be used outside of a Ray "
                                           "Train training function"):
        train.get_checkpoint()


def test_train_get_context_outside_a_training_function_raises():
    """Ray: RuntimeError "`get_context` cannot be used outside of a Ray Train training
    function. ..."."""
    with pytest.raises(RuntimeError, match="`get_context` cannot be used outside of a Ray "
                                           "Train training function"):
        train.get_context()


@pytest.mark.parametrize("api, call", [
    ("report", lambda: train.report({"loss": 1.0})),
    ("get_dataset_shard", lambda: train.get_dataset_shard("train")),
])
def test_other_train_functions_outside_a_training_function_raise(api, call):
    """Ray: the same RuntimeError for ``train.report`` and ``train.get_dataset_shard``."""
    with pytest.raises(RuntimeError, match=f"`{api}` cannot be used outside of a Ray Train "
                                           "training function"):
        call()


def test_tune_get_checkpoint_outside_a_trial_warns_and_returns_none():
    """Ray: ``tune.get_checkpoint()`` warns "... is meant to only be called inside a
    function that is executed by a Tuner or Trainer. Returning `None`." and returns None."""
    from tunelib import session

    session._warned_outside.discard("get_checkpoint")
    with pytest.warns(UserWarning, match="`get_checkpoint` is meant to only be called inside"):
        assert tune.get_checkpoint() is None


def test_tune_get_context_outside_a_trial_is_an_empty_world_of_one():
    """Ray: ``tune.get_context()`` returns a TuneContext whose trial names are None and
    whose world is rank 0 of 1."""
    ctx = tune.get_context()
    assert (ctx.get_trial_name(), ctx.get_trial_id(), ctx.get_trial_dir(),
            ctx.get_experiment_name()) == (None, None, None, None)
    assert (ctx.get_world_rank(), ctx.get_world_size()) == (0, 1)


def train_api_in_a_tune_trial(config):
    ctx = train.get_context()
    tune.report({"rank": ctx.get_world_rank(), "size": ctx.get_world_size(),
                 "ckpt": train.get_checkpoint() is None})


def test_train_context_and_checkpoint_work_inside_a_tune_trial(tmp_path):
    """Ray 2.60 raises DeprecationWarning for ``ray.train.get_context()`` in a Tune
    function; tunelib accepts ``train.*`` there (a world of one), so scripts written
    against either API run."""
    grid = tune.Tuner(train_api_in_a_tune_trial, run_config=tune.RunConfig(
        storage_path=str(tmp_path / "results"))).fit()
    assert grid.num_errors == 0
    assert (grid[0].metrics["rank"], grid[0].metrics["size"], grid[0].metrics["ckpt"]) == (
        0, 1, True)


# --------------------------------------------------------------------------- the rules


def plain_checkpointing_trial(config):
    with tempfile.TemporaryDirectory() as d:
        tune.report({"x": 1}, checkpoint=tune.Checkpoint.from_directory(d))


def test_session_filled_keys_are_exactly_what_a_trial_adds_to_a_report(tmp_path):
    """The Train view strips exactly the fields a trial session adds to a report (Ray Tune's
    automatic fields), so that ``metrics`` is what the function reported."""
    grid = tune.Tuner(plain_checkpointing_trial, param_space={"a": 1}, run_config=tune.RunConfig(
        storage_path=str(tmp_path / "results"))).fit()
    with open(os.path.join(grid[0].path, "result.json")) as f:
        row = json.loads(f.readline())
    assert set(row) - {"x"} == SESSION_FILLED_KEYS


def _ck(name, **metrics):
    return (name, metrics)


def test_rank_checkpoints_orders_worst_first_older_first_among_equals():
    """Ray Train's order: ascending score, report order for ties; missing scores are -inf
    (so, negated, they rank best for "min", as in Ray) and NaN ranks below everything."""
    reported = [_ck("a", loss=0.5), _ck("b", loss=0.1), _ck("c"), _ck("d", loss=0.5),
                _ck("e", loss=math.nan)]
    by_max = tune.CheckpointConfig(checkpoint_score_attribute="loss", checkpoint_score_order="max")
    by_min = tune.CheckpointConfig(checkpoint_score_attribute="loss", checkpoint_score_order="min")
    assert [n for n, _ in rank_checkpoints(reported, by_max)] == ["e", "c", "b", "a", "d"]
    assert [n for n, _ in rank_checkpoints(reported, by_min)] == ["e", "a", "d", "b", "c"]
    assert [n for n, _ in rank_checkpoints(reported, tune.CheckpointConfig())] == [
        "a", "b", "c", "d", "e"]


def test_score_reaches_nested_metrics():
    cfg = tune.CheckpointConfig(checkpoint_score_attribute="val/loss", checkpoint_score_order="min")
    assert checkpoint_score({"val": {"loss": 0.25}}, cfg) == (True, -0.25)


def test_best_checkpoints_are_the_last_num_to_keep_of_the_ranking():
    ranked = [_ck(n) for n in "abcd"]
    assert best_checkpoints(ranked, tune.CheckpointConfig(num_to_keep=2)) == ranked[2:]
    assert best_checkpoints(ranked, tune.CheckpointConfig()) == ranked
