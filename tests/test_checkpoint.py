"""tunelib.checkpoint.Checkpoint: Ray's ray.train.Checkpoint semantics."""

import os
import pickle
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tunelib import storage
from tunelib.checkpoint import Checkpoint

FIXTURES = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60")


@pytest.fixture
def ckpt_dir(tmp_path):
    d = tmp_path / "ckpt"
    (d / "sub").mkdir(parents=True)
    (d / "model.txt").write_text("weights")
    (d / "sub" / "opt.txt").write_text("adam")
    return str(d)


def _assert_contents(local_dir):
    assert open(os.path.join(local_dir, "model.txt")).read() == "weights"
    assert open(os.path.join(local_dir, "sub", "opt.txt")).read() == "adam"


def test_from_directory_is_local_and_as_directory_yields_the_dir_itself(ckpt_dir):
    ckpt = Checkpoint.from_directory(ckpt_dir)
    assert isinstance(ckpt.filesystem, pafs.LocalFileSystem)
    assert ckpt.path == ckpt_dir
    assert repr(ckpt) == f"Checkpoint(filesystem=local, path={ckpt_dir})"
    with ckpt.as_directory() as d:
        assert d == ckpt_dir
    assert os.path.isdir(ckpt_dir)  # nothing removed


def test_to_directory_copies(ckpt_dir, tmp_path):
    out = Checkpoint.from_directory(ckpt_dir).to_directory(str(tmp_path / "copy"))
    assert out == str(tmp_path / "copy")
    _assert_contents(out)


def test_metadata_set_update_get(ckpt_dir):
    ckpt = Checkpoint.from_directory(ckpt_dir)
    assert ckpt.get_metadata() == {}
    ckpt.set_metadata({"epoch": 1})
    ckpt.update_metadata({"note": "x"})
    assert ckpt.get_metadata() == {"epoch": 1, "note": "x"}
    assert os.path.exists(os.path.join(ckpt_dir, ".metadata.json"))


def test_reads_ray_written_metadata():
    meta = os.path.join(FIXTURES, "extras_meta")
    trial = [d for d in os.listdir(meta) if d.startswith("meta_fn")][0]
    ckpt = Checkpoint(os.path.join(meta, trial, "checkpoint_000000"))
    assert ckpt.get_metadata() == {"iter": 0, "note": "user metadata"}


def test_memory_round_trip_and_pickle(ckpt_dir):
    fs, path = storage.get_fs_and_path("memory://ckpt_test/c1")
    storage.upload_dir(ckpt_dir, fs, path)
    ckpt = pickle.loads(pickle.dumps(Checkpoint("memory://ckpt_test/c1")))
    assert ckpt.path == "/ckpt_test/c1"
    ckpt.set_metadata({"k": 1})
    with ckpt.as_directory() as d:
        assert d != path
        _assert_contents(d)
        assert os.path.exists(os.path.join(d, ".metadata.json"))
    assert not os.path.exists(d)  # temp download removed
    _assert_contents(ckpt.to_directory())


def test_checkpoint_is_not_a_path(ckpt_dir):
    with pytest.raises(TypeError):
        os.fspath(Checkpoint.from_directory(ckpt_dir))


def test_removed_ray_1_apis_raise_attribute_error():
    with pytest.raises(AttributeError, match="directories"):
        Checkpoint.from_dict
