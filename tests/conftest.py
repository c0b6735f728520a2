"""Test isolation: a private PREFECT_HOME (never ~/.prefect), temporary storage, and one
Prefect server shared by the engine tests of a session (starting one per experiment would
cost seconds each).

Everything a session puts in the temp dir lives in one ``tunelib-test-*`` folder, removed
when the session ends: PREFECT_HOME, TUNE_RESULT_DIR, and (through ``tempfile`` and
TMPDIR) the temp dirs the code under test and its worker processes leave behind, such as
``Checkpoint.to_directory()``'s downloads. pytest's own ``tmp_path`` stays where it was.
"""

import os
import shutil
import tempfile

# fit() waits for its records here (as the tests read them right after it); detaching
# after a short wait is tested with an explicit one (tests/test_recorder_process.py)
os.environ.setdefault("TUNELIB_RECORD_WAIT_S", "300")
# Before anything imports prefect.
SESSION_DIR = tempfile.mkdtemp(prefix="tunelib-test-")
os.environ["PREFECT_HOME"] = os.path.join(SESSION_DIR, "prefect")
os.makedirs(os.environ["PREFECT_HOME"])
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("TUNE_RESULT_DIR", os.path.join(SESSION_DIR, "results"))

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def session_temp_dir(tmp_path_factory):
    """Point ``tempfile`` (and TMPDIR, for worker processes) into the session's folder.

    Session-scoped and autouse, so it is set up before, and torn down after, the servers.
    """
    tmp_path_factory.getbasetemp()  # fixed first: tmp_path stays in the real temp dir
    path = os.path.join(SESSION_DIR, "tmp")
    os.makedirs(path, exist_ok=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = path
    os.environ["TMPDIR"] = path
    yield path
    tempfile.tempdir = saved[0]
    if saved[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[1]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # last, after pytest's own sessionfinish has torn down any fixture still up (an
    # interrupted run): the Prefect and moto servers have stopped by now
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect server (the embedded kind) for the test session; yields its API URL."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url
    yield server.api_url
    os.environ.pop("PREFECT_API_URL", None)
    server.stop()


@pytest.fixture
def storage_dir(tmp_path):
    """A fresh local storage_path for one test."""
    path = tmp_path / "results"
    path.mkdir()
    return str(path)


_AWS_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="session")
def moto_s3():
    """An S3 endpoint on loopback (moto's server mode) for the session, with the AWS
    variables pointing at it; yields ``make_bucket(name) -> "s3://name"``. Stopped by PID."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    import signal
    import socket
    import subprocess
    import sys
    import time

    from tunelib import storage

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in _AWS_KEYS}
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")

    def make_bucket(name: str) -> str:
        fs, _ = storage.get_fs_and_path(f"s3://{name}")
        fs.create_dir(name)
        return f"s3://{name}"

    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        storage._FS_CACHE.pop("s3", None)  # pick up the endpoint
        yield make_bucket
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        storage._FS_CACHE.pop("s3", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
