"""TorchTrainer end to end on CPU with 2 workers (gloo DDP): the digits example learns,
its rank-0 checkpoint restores the model, an injected failure resumes from the last
checkpoint, the process group is set up before the user's function, Tuner(TorchTrainer)."""

import math
import os
import sys
import tempfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tunelib import train, tune  # noqa: E402
from tunelib.train import TrainingFailedError  # noqa: E402
from tunelib.train.torch import TorchTrainer  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
import train_digits_torch as digits  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _accuracy_of(checkpoint) -> float:
    with checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, "model.pt"))
    model = digits.build_model()
    model.load_state_dict(state["model"])
    _, (x_test, y_test) = digits.load_digits_split()
    with torch.no_grad():
        return (model(x_test).argmax(dim=1) == y_test).float().mean().item()


def _every_report(result):
    """Every report of the run: the trial dir keeps them all (Tune's layout), while Ray
    Train's Result holds only those reported with a kept checkpoint."""
    return tune.Result.from_path(result.path).metrics_dataframe


def test_digits_loss_goes_down_accuracy_up_and_checkpoint_restores_the_model(storage_dir):
    result = digits.make_trainer(epochs=4, storage_path=storage_dir).fit()
    # Ray Train: one row per kept checkpoint (the example keeps 2), rank 0's metrics as
    # reported, none of Tune's automatic fields
    df = result.metrics_dataframe
    assert list(df["epoch"]) == [3, 4]
    assert set(df["rank"]) == {0}
    assert set(result.metrics) == {"epoch", "loss", "test_loss", "accuracy", "rank"}
    assert result.metrics["loss"] < math.log(10) / 2   # 10-class cross-entropy starts at ln 10
    history = _every_report(result)
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0] / 2
    assert history["accuracy"].iloc[-1] > history["accuracy"].iloc[0]
    assert result.metrics["accuracy"] > 0.85
    # the checkpoint rank 0 reported holds the weights that scored that accuracy
    assert result.checkpoint.path.endswith("checkpoint_000003")
    assert _accuracy_of(result.checkpoint) == pytest.approx(result.metrics["accuracy"])
    # Ray's naming: <TrainerName>_<date>/<TrainerName>_<id>_00000_0_<date>
    experiment_dir = os.path.basename(os.path.dirname(result.path))
    assert experiment_dir.startswith("TorchTrainer_")
    assert os.path.basename(result.path).startswith(
        f"TorchTrainer_{history['trial_id'].iloc[-1]}_0_")


def test_injected_failure_resumes_from_the_latest_checkpoint(storage_dir, tmp_path):
    marker = str(tmp_path / "failed_once")
    result = digits.make_trainer(epochs=5, fail_at_epoch=3, failure_marker=marker,
                                 storage_path=storage_dir, max_failures=1).fit()
    assert os.path.exists(marker)                      # the failure did happen
    assert result.error is None
    assert list(result.metrics_dataframe["epoch"]) == [4, 5]   # the 2 kept checkpoints
    # 5 checkpoints in all: the failed epoch resumed from the last one, not from scratch
    assert result.checkpoint.path.endswith("checkpoint_000004")
    df = _every_report(result)
    assert list(df["training_iteration"]) == [1, 2, 3, 4, 5]
    assert list(df["epoch"]) == [1, 2, 3, 4, 5]        # epoch 3 resumed, not restarted
    # one restart, from the checkpoint of the last round every rank completed: round 2,
    # or round 1 when rank 1 reached its failure before rank 0 finished round 2 (report()
    # is not a barrier)
    since = list(df["iterations_since_restore"])
    assert since in ([1, 2, 1, 2, 3], [1, 1, 2, 3, 4])
    assert df["loss"].iloc[-1] < df["loss"].iloc[0]


def test_failure_beyond_max_failures_raises_training_failed_error(storage_dir, tmp_path):
    marker = str(tmp_path / "failed_once")
    with pytest.raises(TrainingFailedError, match="injected failure at epoch 2 on rank 1"):
        digits.make_trainer(epochs=3, fail_at_epoch=2, failure_marker=marker,
                            storage_path=storage_dir, max_failures=0).fit()


def process_group_loop():
    import torch.distributed as dist

    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    with tempfile.TemporaryDirectory() as d:   # Ray Train's Result keeps checkpointed metrics
        train.report({
            "initialized": dist.is_initialized(), "backend": dist.get_backend(),
            "world_size": dist.get_world_size(), "sum_of_ranks_plus_one": t.item(),
            "master": os.environ["MASTER_ADDR"] + ":" + os.environ["MASTER_PORT"],
            "device": str(digits.get_device()),
        }, checkpoint=train.Checkpoint.from_directory(d))


def test_process_group_is_ready_before_the_train_function_starts(storage_dir):
    result = TorchTrainer(process_group_loop,
                          scaling_config=train.ScalingConfig(num_workers=2),
                          run_config=train.RunConfig(storage_path=storage_dir)).fit()
    m = result.metrics
    assert m["initialized"] and m["backend"] == "gloo" and m["world_size"] == 2
    assert m["sum_of_ranks_plus_one"] == 3.0
    assert m["master"].startswith("127.0.0.1:") and m["device"] == "cpu"


def test_tuner_tunes_a_torch_trainer_one_trial_per_config(storage_dir):
    trainer = digits.make_trainer(epochs=2, storage_path=storage_dir)
    grid = tune.Tuner(
        trainer,
        param_space={"train_loop_config": {"lr": tune.grid_search([0.1, 0.01])}},
        tune_config=tune.TuneConfig(metric="accuracy", mode="max"),
        run_config=tune.RunConfig(storage_path=storage_dir),
    ).fit()
    assert len(grid) == 2 and grid.num_errors == 0
    assert sorted(r.config["train_loop_config"]["lr"] for r in grid) == [0.01, 0.1]
    assert all(r.metrics["training_iteration"] == 2 for r in grid)
    assert all(os.path.basename(r.path).startswith("TorchTrainer_") for r in grid)
    assert grid.get_best_result().config["train_loop_config"]["lr"] == 0.1
