"""Checkpoints, storage and Result reading on s3:// (moto server on a loopback port)."""

import os
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from tunelib import storage  # noqa: E402
from tunelib.analysis import ExperimentAnalysis  # noqa: E402
from tunelib.checkpoint import Checkpoint  # noqa: E402
from tunelib.result import Result  # noqa: E402
from tunelib.result_grid import ResultGrid  # noqa: E402

FIXTURES = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60")


@pytest.fixture(scope="module")
def s3_endpoint(moto_s3):
    moto_s3("tunelib-test")
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.mark.slow
def test_checkpoint_round_trip_on_s3(s3_endpoint, tmp_path):
    src = tmp_path / "c"
    (src / "sub").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"123")
    (src / "sub" / "x.txt").write_text("x")
    fs, path = storage.get_fs_and_path("s3://tunelib-test/exp/ckpt")
    storage.upload_dir(str(src), fs, path)
    ckpt = Checkpoint("s3://tunelib-test/exp/ckpt")
    assert ckpt.path == "tunelib-test/exp/ckpt"
    ckpt.update_metadata({"a": 1})
    assert ckpt.get_metadata() == {"a": 1}
    with ckpt.as_directory() as d:
        assert open(os.path.join(d, "w.bin"), "rb").read() == b"123"
        assert open(os.path.join(d, "sub", "x.txt")).read() == "x"
    assert not os.path.exists(d)
    storage.delete_dir(fs, "tunelib-test/exp")
    assert not storage.exists(fs, path)


@pytest.mark.slow
def test_ray_experiment_read_from_s3(s3_endpoint):
    fs, path = storage.get_fs_and_path("s3://tunelib-test/results/layout_grid")
    storage.upload_dir(os.path.join(FIXTURES, "layout_grid"), fs, path)
    grid = ResultGrid(ExperimentAnalysis("s3://tunelib-test/results/layout_grid",
                                         default_metric="loss", default_mode="min"))
    assert len(grid) == 3 and grid.experiment_path == "tunelib-test/results/layout_grid"
    best = grid.get_best_result()
    assert best.config == {"lr": 0.001}
    assert best.path.startswith("tunelib-test/results/layout_grid/train_fn_2716e_00000")
    with best.checkpoint.as_directory() as d:
        assert os.listdir(d) == ["state.json"]
    trial_uri = "s3://" + best.path
    result = Result.from_path(trial_uri)
    assert result.path == best.path and len(result.metrics_dataframe) == 5
