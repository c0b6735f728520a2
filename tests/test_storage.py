"""tunelib.storage: one (filesystem, path) API over local disk, memory:// and s3://."""

import os
import pickle

import pyarrow.fs as pafs
import pytest

from tunelib import storage


def _make_tree(root):
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "a.txt"), "w") as f:
        f.write("alpha")
    with open(os.path.join(root, "sub", "b.bin"), "wb") as f:
        f.write(b"\x00\x01")


def test_local_path_resolves_to_local_fs_and_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = storage.get_fs_and_path("rel/dir")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == str(tmp_path / "rel" / "dir")
    assert storage.get_fs_and_path(f"file://{tmp_path}")[1] == str(tmp_path)
    assert storage.fs_uri(fs, path) == path


def test_explicit_filesystem_keeps_path_as_given():
    local = pafs.LocalFileSystem()
    assert storage.get_fs_and_path("bucket/x", local) == (local, "bucket/x")


def test_memory_uri_round_trips_and_is_process_local():
    fs, path = storage.get_fs_and_path("memory://exp/one")
    assert storage.fs_uri(fs, path) == "memory://exp/one"
    assert storage.is_process_local(fs)
    assert not storage.is_process_local(storage.fs_from_uri("/tmp"))
    assert storage.get_fs_and_path("memory://other")[0] is fs  # cached


def test_s3_uri_gives_bucket_path():
    fs, path = storage.get_fs_and_path("s3://bucket/loc/exp")
    assert path == "bucket/loc/exp"
    assert storage.fs_uri(fs, path) == "s3://bucket/loc/exp"


@pytest.mark.parametrize("uri_kind", ["local", "memory"])
def test_write_read_list_delete(tmp_path, uri_kind):
    base = str(tmp_path / "d") if uri_kind == "local" else "memory://storage_test/d"
    fs, path = storage.get_fs_and_path(base)
    storage.write_text(fs, storage.join(path, "x", "f.txt"), "héllo")
    assert storage.read_text(fs, storage.join(path, "x", "f.txt")) == "héllo"
    storage.write_bytes(fs, storage.join(path, "x", "f.txt"), b"new")
    assert storage.read_bytes(fs, storage.join(path, "x", "f.txt")) == b"new"
    assert storage.exists(fs, path) and storage.is_dir(fs, storage.join(path, "x"))
    assert not storage.is_dir(fs, storage.join(path, "x", "f.txt"))
    assert storage.list_dir(fs, storage.join(path, "x")) == ["f.txt"]
    assert storage.list_dir(fs, path, dirs_only=True) == ["x"]
    assert storage.list_dir(fs, storage.join(path, "missing")) == []
    storage.delete_dir(fs, path)
    assert not storage.exists(fs, path)
    storage.delete_dir(fs, path)  # missing is fine


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    fs, path = storage.get_fs_and_path(str(tmp_path))
    storage.write_text(fs, storage.join(path, "state.json"), "{}")
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize("uri_kind", ["local", "memory"])
def test_upload_then_download_dir_round_trip(tmp_path, uri_kind):
    src = str(tmp_path / "src")
    _make_tree(src)
    dest = str(tmp_path / "dest") if uri_kind == "local" else "memory://storage_test/updown"
    fs, path = storage.get_fs_and_path(dest)
    storage.upload_dir(src, fs, path)
    out = str(tmp_path / "out")
    storage.download_dir(fs, path, out)
    assert open(os.path.join(out, "a.txt")).read() == "alpha"
    assert open(os.path.join(out, "sub", "b.bin"), "rb").read() == b"\x00\x01"


def test_filesystems_pickle():
    for uri in ("/tmp", "memory://p", "s3://bucket/p"):
        fs, _ = storage.get_fs_and_path(uri)
        assert pickle.loads(pickle.dumps(fs)).type_name == fs.type_name
