"""A whole scale-out setup on this machine, for tests and benchmarks.

``LocalCluster`` starts, in order: a fresh PostgreSQL database (``tunelib_<random>`` on
127.0.0.1:5432, trust auth, with ``pg_trgm``), ``prefect server start`` on a free loopback
port backed by it, a ``process`` work pool, the trial deployment (deployments/deploy.py),
and N ``prefect worker start`` processes. Every process gets its own temporary
PREFECT_HOME. ``close()`` stops them by PID (a second signal where one is not enough) and
drops the database. The commands are the ones deployments/README.md lists.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def postgres_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def _psql(database: str, sql: str) -> None:
    subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", database,
                    "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                   check=True, capture_output=True, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class LocalCluster:
    """Server + pool + deployment + workers on this machine (see module docstring)."""

    def __init__(self, workers: int = 2, pool: str = "tunelib", deployment: str = "tunelib-trial",
                 query_seconds: float = 1.0, log_dir: Optional[str] = None):
        self.n_workers = workers
        self.pool = pool
        self.deployment_name = deployment
        self.query_seconds = query_seconds
        self.database = f"tunelib_{uuid.uuid4().hex[:10]}"
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="tunelib-cluster-logs-")
        self.server: Optional[subprocess.Popen] = None
        self.workers: List[subprocess.Popen] = []
        self.worker_names: List[str] = []
        self._homes: List[str] = []
        self._db_created = False

    # ------------------------------------------------------------------ plumbing
    def env(self, **extra: str) -> Dict[str, str]:
        home = tempfile.mkdtemp(prefix="tunelib-prefect-home-")
        self._homes.append(home)
        env = dict(os.environ)
        env.update({
            "PREFECT_HOME": home,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        })
        env.update(extra)
        return env

    def _log(self, name: str):
        return open(os.path.join(self.log_dir, f"{name}.log"), "w")

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 120.0) -> "LocalCluster":
        try:
            self._start(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, timeout: float) -> None:
        _psql("test", f"create database {self.database}")
        self._db_created = True
        _psql(self.database, "create extension if not exists pg_trgm")
        db_url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database}"
        env = self.env(PREFECT_SERVER_DATABASE_CONNECTION_URL=db_url, PREFECT_UI_ENABLED="false")
        env.pop("PREFECT_API_URL")
        self.server = subprocess.Popen(
            ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=self._log("server"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_healthy(timeout)
        # the pool and the deployment, with the same commands a user types
        subprocess.run(["prefect", "work-pool", "create", self.pool, "--type", "process"],
                       env=self.env(), check=True, capture_output=True, text=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "deployments", "deploy.py"),
                        "--pool", self.pool, "--name", self.deployment_name],
                       env=self.env(), check=True, capture_output=True, text=True, cwd=ROOT)
        for i in range(self.n_workers):
            self.start_worker(f"tunelib-worker-{i}")

    def start_worker(self, name: str) -> subprocess.Popen:
        env = self.env(PREFECT_WORKER_QUERY_SECONDS=str(self.query_seconds),
                       PREFECT_WORKER_PREFETCH_SECONDS="0")
        proc = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", self.pool, "--name", name, "--limit", "1"],
            env=env, stdout=self._log(name), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
        self.workers.append(proc)
        self.worker_names.append(name)
        return proc

    def _wait_healthy(self, timeout: float) -> None:
        from tunelib.prefect.server import wait_for_api

        wait_for_api(self.api_url, self.server, timeout, "prefect server",
                     hint=f"see {self.log_dir}/server.log", poll_s=0.2)

    def worker_log(self, name: str) -> str:
        with open(os.path.join(self.log_dir, f"{name}.log")) as f:
            return f.read()

    # ------------------------------------------------------------------ stop
    @staticmethod
    def stop_process(proc: Optional[subprocess.Popen], grace: float = 10.0) -> None:
        """SIGTERM its process group, again (a worker may need a second signal), then SIGKILL."""
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace / 2 if sig != signal.SIGKILL else grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker and every process under it (a machine dying): Prefect starts
        flow run processes in their own session, so the process group is not enough."""
        proc = self.workers[index]
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def close(self) -> None:
        for proc in self.workers:
            self.stop_process(proc)
        self.stop_process(self.server)
        if self._db_created:
            try:
                _psql("test", f"drop database if exists {self.database} with (force)")
            except subprocess.CalledProcessError:
                pass
            self._db_created = False
        for home in self._homes:
            shutil.rmtree(home, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
