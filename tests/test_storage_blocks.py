"""Prefect filesystem blocks as experiment storage: results, checkpoints, Result.from_path
and ExperimentAnalysis go through the block (an S3 bucket on a moto server, a local
folder), and a bad block reference fails with an error that says what to do."""

import json
import os
import pickle
import subprocess
import sys
import tempfile
import uuid

import pytest

from tunelib import storage, tune
from tunelib.analysis import ExperimentAnalysis
from tunelib.result import Result

pytestmark = [pytest.mark.slow]

BUCKET = "tunelib-blocks"


def learner(config):
    """Two steps with a checkpoint each; fails once after the first (``fail_once``), so the
    retry resumes from the checkpoint on the block's storage."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["step"]
    for step in range(start, 2):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1}, f)
            tune.report({"score": config["x"] * (step + 1), "resumed_at": start},
                        checkpoint=tune.Checkpoint.from_directory(d))
        if config["fail_once"] and start == 0:
            raise RuntimeError("first attempt fails after its first checkpoint")


def _fit(run_config, fail_once=False):
    return tune.Tuner(
        learner,
        param_space={"x": tune.grid_search([1, 2]), "fail_once": fail_once},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=run_config,
    ).fit()


@pytest.fixture
def no_prefect_records(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


@pytest.fixture
def prefect_api(prefect_server, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    return prefect_server


def _save(block, api) -> str:
    """Save ``block`` on ``api`` under a fresh name; returns the name."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = f"{block.get_block_type_slug().split('-')[0]}-{uuid.uuid4().hex[:8]}"
    with temporary_settings(updates={PREFECT_API_URL: api}):
        block.save(name)
    return name


@pytest.fixture
def s3_block(moto_s3, prefect_api, no_prefect_records, monkeypatch):
    """A RemoteFileSystem block on the moto bucket, saved under a fresh name; the AWS
    variables point nowhere, so only the block's settings reach the bucket (in this
    process and in the worker processes, which inherit the environment)."""
    from prefect.filesystems import RemoteFileSystem

    moto_s3(BUCKET)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delitem(storage._FS_CACHE, "s3", raising=False)
    block = RemoteFileSystem(basepath=f"s3://{BUCKET}/blocks", settings={
        "key": "test", "secret": "test",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}})
    return block, _save(block, prefect_api), endpoint


def _bucket_files(endpoint, prefix):
    import s3fs

    fs = s3fs.S3FileSystem(key="test", secret="test", skip_instance_cache=True,
                           client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
    return [p[len(prefix) + 1:] for p in fs.find(prefix)]


def test_block_url_stores_results_and_checkpoints_in_the_bucket(s3_block):
    _, name, endpoint = s3_block
    url = f"prefect-block://remote-file-system/{name}/runs"
    grid = _fit(tune.RunConfig(name="exp", storage_path=url, verbose=0,
                               failure_config=tune.FailureConfig(max_failures=1)),
                fail_once=True)

    assert not grid.errors
    files = _bucket_files(endpoint, f"{BUCKET}/blocks/runs/exp")
    trial_dirs = sorted({f.split("/")[0] for f in files if f.endswith("/result.json")})
    assert len(trial_dirs) == 2
    assert any(f.endswith("checkpoint_000001/state.json") for f in files)
    # the retry read its checkpoint back through the block, in its worker process
    assert sorted(r.metrics["resumed_at"] for r in grid) == [1, 1]

    result = Result.from_path(f"{url}/exp/{trial_dirs[0]}")
    assert result.path == f"{BUCKET}/blocks/runs/exp/{trial_dirs[0]}"
    assert result.metrics["score"] in (2, 4) and len(result.metrics_dataframe) == 2
    with result.checkpoint.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            assert json.load(f) == {"step": 2}

    analysis = ExperimentAnalysis(f"{url}/exp", default_metric="score", default_mode="max")
    assert len(analysis.trials) == 2
    assert analysis.best_config["x"] == 2


def test_block_instance_as_storage_filesystem(s3_block):
    block, _, endpoint = s3_block
    grid = _fit(tune.RunConfig(name="exp", storage_path="inst", storage_filesystem=block,
                               verbose=0))

    assert not grid.errors
    assert grid.experiment_path == f"{BUCKET}/blocks/inst/exp"
    files = _bucket_files(endpoint, f"{BUCKET}/blocks/inst/exp")
    assert sum(f.endswith("/result.json") for f in files) == 2
    best = grid.get_best_result()
    assert best.config["x"] == 2
    again = Result.from_path(best.path, storage_filesystem=block)
    assert again.metrics["score"] == 4
    with again.checkpoint.as_directory() as d:
        assert os.listdir(d) == ["state.json"]


def test_block_filesystem_pickles_with_its_settings(s3_block):
    _, name, _ = s3_block
    fs, path = storage.get_fs_and_path(f"prefect-block://remote-file-system/{name}/p")
    storage.write_text(fs, storage.join(path, "f.txt"), "through the block")

    copy = pickle.loads(pickle.dumps(fs))  # what a worker process receives
    assert storage.read_text(copy, storage.join(path, "f.txt")) == "through the block"
    assert storage.fs_uri(copy, path) == f"prefect-block://remote-file-system/{name}/p"


def test_local_file_system_block(prefect_api, no_prefect_records, tmp_path):
    from prefect.filesystems import LocalFileSystem

    name = _save(LocalFileSystem(basepath=str(tmp_path / "base")), prefect_api)
    url = f"prefect-block://local-file-system/{name}/sub"
    grid = _fit(tune.RunConfig(name="exp", storage_path=url, verbose=0))

    assert not grid.errors
    exp_dir = tmp_path / "base" / "sub" / "exp"
    trial_dirs = [p for p in exp_dir.iterdir() if (p / "result.json").exists()]
    assert len(trial_dirs) == 2
    result = Result.from_path(f"{url}/exp/{trial_dirs[0].name}")
    assert result.path == str(trial_dirs[0])
    assert len(ExperimentAnalysis(f"{url}/exp").trials) == 2


def test_unknown_block_name_says_how_to_create_it(prefect_api, no_prefect_records):
    config = tune.RunConfig(name="exp", storage_path="prefect-block://remote-file-system/nope")
    with pytest.raises(ValueError) as info:
        _fit(config)
    message = str(info.value)
    assert "no Prefect block 'remote-file-system/nope' on " + prefect_api in message
    assert "RemoteFileSystem(...).save('nope')" in message


def test_unsupported_block_type_names_the_supported_ones(prefect_api):
    with pytest.raises(ValueError, match="cannot hold tunelib storage: use one of "
                       "local-file-system, remote-file-system, s3-bucket"):
        Result.from_path("prefect-block://secret/my-secret/exp/trial")


def test_unsupported_block_instance_names_the_supported_ones(tmp_path):
    from prefect.blocks.system import Secret

    with pytest.raises(ValueError, match="'secret' .*use one of local-file-system"):
        Result.from_path("exp/trial", storage_filesystem=Secret(value="x"))


def test_s3_bucket_block_needs_prefect_aws(prefect_api):
    try:
        import prefect_aws  # noqa: F401
        pytest.skip("prefect-aws is installed")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="needs prefect-aws: pip install prefect-aws"):
        Result.from_path("prefect-block://s3-bucket/my-bucket/exp/trial")


def test_malformed_block_url_shows_the_form():
    with pytest.raises(ValueError, match="prefect-block://<block-type-slug>/<block-name>"):
        storage.get_fs_and_path("prefect-block://remote-file-system")


def test_plain_paths_do_not_import_prefect(tmp_path):
    code = ("import sys, pyarrow.fs as pafs; from tunelib import storage; "
            f"storage.get_fs_and_path({str(tmp_path)!r}); "
            "storage.get_fs_and_path('x', pafs.LocalFileSystem()); "
            "storage.get_fs_and_path('memory://x'); "
            "assert 'prefect' not in sys.modules, 'prefect was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
