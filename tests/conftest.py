"""Test isolation: a private PREFECT_HOME (never ~/.prefect), temporary storage, and one
Prefect server shared by the engine tests of a session (starting one per experiment would
cost seconds each)."""

import os
import tempfile

# Before anything imports prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tunelib-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("TUNE_RESULT_DIR", tempfile.mkdtemp(prefix="tunelib-test-results-"))

import pytest  # noqa: E402


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
