"""Ray Train on tunelib, framework-neutral: DataParallelTrainer's worker group, its report
protocol (rounds, mismatches, dead workers, stops), Tuner(trainer), and bad input."""

import os
import tempfile
import threading
import time

import pytest

from tunelib import train, tune
from tunelib.train import DataParallelTrainer, ScalingConfig, TrainingFailedError


def _trainer(fn, storage_dir, config=None, num_workers=2, **run):
    return DataParallelTrainer(
        fn, train_loop_config=config or {},
        scaling_config=ScalingConfig(num_workers=num_workers),
        run_config=train.RunConfig(storage_path=storage_dir, **run),
    )


def rank_reporting_loop(config):
    """Each rank reports its own rank (with a checkpoint: Ray Train keeps only metrics
    reported with one) for `rounds` rounds and leaves a file naming itself."""
    ctx = train.get_context()
    rank = ctx.get_world_rank()
    name = (f"rank{rank}_ws{ctx.get_world_size()}_local{ctx.get_local_rank()}"
            f"_lws{ctx.get_local_world_size()}_node{ctx.get_node_rank()}"
            f"_env{os.environ['RANK']}{os.environ['WORLD_SIZE']}")
    open(os.path.join(config["out"], name), "w").write(ctx.get_trial_id())
    for i in range(config["rounds"]):
        with tempfile.TemporaryDirectory() as d:
            train.report({"round": i + 1, "rank": rank, "trial_name": ctx.get_trial_name(),
                          "experiment": ctx.get_experiment_name()},
                         checkpoint=train.Checkpoint.from_directory(d))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_every_rank_reports_once_per_round_and_rank0_metrics_win(storage_dir, tmp_path):
    out = tmp_path / "ranks"
    out.mkdir()
    result = _trainer(rank_reporting_loop, storage_dir, {"rounds": 4, "out": str(out)}).fit()
    assert result.error is None
    assert result.metrics["round"] == 4
    df = result.metrics_dataframe
    assert list(df["round"]) == [1, 2, 3, 4]
    assert set(df["rank"]) == {0}
    assert result.checkpoint.path.endswith("checkpoint_000003")
    marks = sorted(os.listdir(out))
    assert marks == ["rank0_ws2_local0_lws2_node0_env02", "rank1_ws2_local1_lws2_node0_env12"]
    trial_id = open(out / marks[0]).read()
    assert all(open(out / m).read() == trial_id for m in marks)
    assert result.metrics["trial_name"].startswith("DataParallelTrainer_")
    assert result.metrics["experiment"] == os.path.basename(os.path.dirname(result.path))
    assert os.path.basename(result.path).startswith(f"DataParallelTrainer_{trial_id}_0_")


def unequal_reports_loop(config):
    rank = train.get_context().get_world_rank()
    for i in range(3 if rank == 0 else 2):
        train.report({"i": i})
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_rank_finishing_with_fewer_reports_fails_with_a_clear_error(storage_dir):
    start = time.monotonic()
    with pytest.raises(TrainingFailedError, match=r"rank 1 finished after 2 train.report\(\) "
                                                  r"calls .*rank 0: 3, rank 1: 2"):
        _trainer(unequal_reports_loop, storage_dir).fit()
    assert time.monotonic() - start < 60


def silent_rank_loop(config):
    if train.get_context().get_world_rank() == 1:
        time.sleep(600)
    train.report({"i": 0})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_rank_that_never_reports_fails_after_the_report_timeout(storage_dir, monkeypatch):
    monkeypatch.setenv("TUNELIB_TRAIN_REPORT_TIMEOUT_S", "2")
    start = time.monotonic()
    with pytest.raises(TrainingFailedError,
                       match=r"rank\(s\) \[1\] did not call train.report\(\) for round 1 within 2 s"):
        _trainer(silent_rank_loop, storage_dir).fit()
    assert time.monotonic() - start < 60


def dying_rank_loop(config):
    train.report({"i": 0})
    if train.get_context().get_world_rank() == 1:
        os._exit(3)
    time.sleep(600)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_dead_worker_kills_its_group_promptly(storage_dir):
    start = time.monotonic()
    with pytest.raises(TrainingFailedError, match=r"rank 1 \(pid \d+\) died with exit code 3"):
        _trainer(dying_rank_loop, storage_dir).fit()
    assert time.monotonic() - start < 60


def raising_rank_loop():
    if train.get_context().get_world_rank() == 1:
        raise ValueError("bad batch on rank 1")
    time.sleep(600)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_raising_worker_fails_the_run_with_its_traceback(storage_dir):
    with pytest.raises(TrainingFailedError, match="rank 1 failed") as info:
        _trainer(raising_rank_loop, storage_dir).fit()
    assert "ValueError: bad batch on rank 1" in str(info.value)
    assert isinstance(info.value.worker_failures[1], ValueError)


def endless_loop(config):
    i = 0
    while True:
        i += 1
        with tempfile.TemporaryDirectory() as d:
            train.report({"i": i}, checkpoint=train.Checkpoint.from_directory(d))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_stop_condition_ends_every_worker(storage_dir):
    result = _trainer(endless_loop, storage_dir, stop={"training_iteration": 3}).fit()
    assert result.error is None
    assert result.metrics == {"i": 3}
    assert len(result.metrics_dataframe) == 3


def lr_loop(config):
    train.report({"lr": config["lr"], "fixed": config["fixed"]})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_tuner_runs_one_trainer_per_trial(storage_dir):
    trainer = _trainer(lr_loop, storage_dir, {"lr": 1.0, "fixed": "kept"}, num_workers=1)
    grid = tune.Tuner(
        trainer,
        param_space={"train_loop_config": {"lr": tune.grid_search([0.1, 0.01])}},
        run_config=tune.RunConfig(storage_path=storage_dir),
    ).fit()
    assert len(grid) == 2 and grid.num_errors == 0
    assert sorted(r.metrics["lr"] for r in grid) == [0.01, 0.1]
    assert {r.metrics["fixed"] for r in grid} == {"kept"}
    assert all(os.path.basename(r.path).startswith("DataParallelTrainer_") for r in grid)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_num_workers_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="`num_workers` must be an integer >= 1"):
        ScalingConfig(num_workers=n)


def test_use_gpu_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="`use_gpu=True` but no GPU is visible"):
        ScalingConfig(num_workers=2, use_gpu=True)


def two_args(a, b):
    pass


@pytest.mark.parametrize("fn", [two_args, lambda *, config: None, "not a function"])
def test_train_loop_must_take_zero_or_one_argument(fn):
    with pytest.raises(TypeError, match="`train_loop_per_worker`"):
        DataParallelTrainer(fn)


def test_train_loop_taking_zero_or_one_argument_is_accepted():
    DataParallelTrainer(lambda: None)
    DataParallelTrainer(lambda config: None)
    DataParallelTrainer(lambda config=None: None)


def test_train_loop_config_must_be_serialisable():
    with pytest.raises(TypeError, match="`train_loop_config` cannot be serialised"):
        DataParallelTrainer(lambda config: None, train_loop_config={"lock": threading.Lock()})


def test_train_loop_config_must_be_a_dict():
    with pytest.raises(TypeError, match="`train_loop_config` must be a dict"):
        DataParallelTrainer(lambda config: None, train_loop_config=[1, 2])


def test_scaling_config_must_be_a_scaling_config():
    with pytest.raises(TypeError, match="`scaling_config` must be a train.ScalingConfig"):
        DataParallelTrainer(lambda: None, scaling_config={"num_workers": 2})


def test_misspelled_scaling_config_argument_names_the_right_one():
    with pytest.raises(TypeError, match="did you mean 'num_workers'"):
        ScalingConfig(num_worker=2)


def test_context_outside_a_trainer_raises_as_in_ray():
    with pytest.raises(RuntimeError, match="`get_context` cannot be used outside of a Ray "
                                           "Train training function"):
        train.get_context()
