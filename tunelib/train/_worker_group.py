"""The data-parallel worker group of one trainer run, and the protocol between its ranks
and the coordinator.

The coordinator runs inside the trial (in the trial's worker process). It starts N rank
processes as ``python -m tunelib.train._rank_main`` (never multiprocessing's spawn, which
re-runs an unguarded user script), which connect back over a Unix socket. Each rank's
``train.report()`` is sent to the coordinator and answered at once (report is not a
barrier); when every rank has reported round k, the coordinator records round k once in
the trial's session: rank 0's metrics, and one checkpoint merging the directories of every
rank that gave one (as Ray Train does; a file that several ranks wrote is the lowest
rank's).
A rank that raises or dies, or ranks whose report counts cannot match, fail the whole
group promptly: the others are terminated and the trial fails (and is retried from its
latest checkpoint when ``FailureConfig(max_failures)`` allows).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Listener, wait
from typing import Any, Dict, List, Optional

from tunelib import session as _session
from tunelib._lifecycle import Decision
from tunelib.train._messages import RankDone, RankFailed, RankReport

REPORT_TIMEOUT_ENV = "TUNELIB_TRAIN_REPORT_TIMEOUT_S"
DEFAULT_REPORT_TIMEOUT_S = 60.0
_START_TIMEOUT_S = 120.0     # rank processes import torch etc. before they connect
_STOP_GRACE_S = 5.0          # ranks told to stop get this long to unwind before a kill


@dataclass
class GroupSpec:
    """What every rank needs, shipped (cloudpickled) to each rank process at start."""

    train_fn: Any                      # the user's train_loop_per_worker
    takes_config: bool
    config: Dict[str, Any]
    num_workers: int
    backend: Optional[Dict[str, Any]]  # {"name": "torch", "backend": "gloo", "timeout_s": ...}
    datasets: Optional[Dict[str, Any]] = None
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    report_timeout_s: float = DEFAULT_REPORT_TIMEOUT_S
    trial: Dict[str, Any] = field(default_factory=dict)  # names shown by get_context()
    checkpoint: Any = None                               # a local Checkpoint to resume from
    sys_path: List[str] = field(default_factory=list)


class _TrialInfo:
    """The trial fields ``TrainContext`` reads, without the trial's whole spec."""

    def __init__(self, fields: Dict[str, Any]):
        self.__dict__.update(fields)


# --------------------------------------------------------------------------- rank side


class RankSession:
    """The session of one training worker: what ``train.report`` / ``get_checkpoint`` /
    ``get_context`` see inside ``train_loop_per_worker``."""

    def __init__(self, conn, spec: GroupSpec, world_rank: int, local_rank: int,
                 local_world_size: int, node_rank: int = 0):
        self._conn = conn
        self.spec = _TrialInfo(spec.trial)
        self.config = spec.config
        self.datasets = spec.datasets
        self.world_rank = world_rank
        self.world_size = spec.num_workers
        self.local_rank = local_rank
        self.local_world_size = local_world_size
        self.node_rank = node_rank
        self.latest_checkpoint = spec.checkpoint
        self.reports = 0

    def report(self, metrics: Dict[str, Any], checkpoint=None, **ignored) -> Decision:
        if not isinstance(metrics, dict):
            raise TypeError(
                f"`metrics` passed to report() must be a dict, got {type(metrics).__name__}."
            )
        if ignored:
            _session.warn_ignored_keywords("report", ignored)
        if checkpoint is not None:
            from tunelib.checkpoint import Checkpoint

            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(
                    "`checkpoint` passed to report() must be a train.Checkpoint "
                    f"(e.g. train.Checkpoint.from_directory(dir)), got {type(checkpoint).__name__}."
                )
        self.reports += 1
        self._conn.send(RankReport(self.world_rank, self.reports, metrics, checkpoint))
        # The coordinator answers once it no longer needs the checkpoint dir (it has copied
        # it), so a temporary directory may be removed as soon as report() returns.
        return self._conn.recv()


# --------------------------------------------------------------------------- coordinator


@dataclass
class _Rank:
    rank: int
    process: subprocess.Popen
    conn: Any = None
    reports: int = 0
    finished: bool = False
    first_pending_since: Optional[float] = None


class _Round:
    """Reports of one round collected so far."""

    def __init__(self):
        self.ranks: Dict[int, Dict[str, Any]] = {}
        self.checkpoint_dirs: Dict[int, str] = {}   # rank -> its staged checkpoint copy
        self.started = time.monotonic()


class WorkerGroup:
    """Runs ``spec.num_workers`` rank processes to completion inside one trial."""

    def __init__(self, spec: GroupSpec, trial_session):
        self.spec = spec
        self.session = trial_session
        self.ranks: List[_Rank] = []
        self.rounds: Dict[int, _Round] = {}
        self.recorded = 0              # rounds recorded in the trial session
        self.decision = _session.CONTINUE
        self._tmp = tempfile.mkdtemp(prefix="tunelib-train-")
        self._listener: Optional[Listener] = None

    # ------------------------------------------------------------------ start / stop
    def _start(self) -> None:
        authkey = secrets.token_bytes(16)
        address = os.path.join(self._tmp, "group.sock")
        self._listener = Listener(address, family="AF_UNIX", authkey=authkey)
        port = _free_port()
        n = self.spec.num_workers
        for rank in range(n):
            env = dict(os.environ)
            env.update({
                "TUNELIB_TRAIN_ADDRESS": address,
                "TUNELIB_TRAIN_AUTHKEY": authkey.hex(),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "RANK": str(rank),
                "WORLD_SIZE": str(n),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(n),
                "NODE_RANK": "0",
                "GROUP_RANK": "0",
            })
            # As Ray: a worker's math libraries use the CPUs it was given, not every core
            # (N workers x all cores of threads thrash a small machine).
            env.setdefault("OMP_NUM_THREADS", str(max(1, int(self.spec.cpus_per_worker))))
            process = subprocess.Popen(
                [sys.executable, "-m", "tunelib.train._rank_main"], env=env,
                stdin=subprocess.DEVNULL,
            )
            self.ranks.append(_Rank(rank, process))
        self._accept_all()
        import cloudpickle

        payload = cloudpickle.dumps(self.spec)
        for r in self.ranks:
            # sys.path first: unpickling the spec may import the user's modules
            r.conn.send(self.spec.sys_path)
            r.conn.send_bytes(payload)

    def _accept_all(self) -> None:
        import threading

        accepted: List[Any] = []
        done = threading.Event()

        def accept():
            try:
                for _ in self.ranks:
                    accepted.append(self._listener.accept())
            except OSError:
                pass
            finally:
                done.set()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not done.wait(0.1):
            for r in self.ranks:
                code = r.process.poll()
                if code is not None:
                    self._listener.close()
                    raise _group_error(
                        f"Training worker rank {r.rank} (pid {r.process.pid}) exited with code "
                        f"{code} before it connected to the trainer.", r.rank)
            if time.monotonic() > deadline:
                self._listener.close()
                raise _group_error(
                    f"The {len(self.ranks)} training workers did not start within "
                    f"{_START_TIMEOUT_S:g} s.", None)
        for conn in accepted:
            hello = conn.recv()
            self.ranks[hello.rank].conn = conn

    def _shutdown(self) -> None:
        for r in self.ranks:
            if r.process.poll() is None:
                r.process.terminate()
        deadline = time.monotonic() + 5
        for r in self.ranks:
            try:
                r.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.process.kill()
                r.process.wait()
            if r.conn is not None:
                r.conn.close()
        if self._listener is not None:
            self._listener.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Start the ranks and serve them until all finish; raises on any failure, or
        ``TrialInterrupted`` when the driver stopped or paused the trial."""
        try:
            self._start()
            self._serve()
        finally:
            self._shutdown()
        if self.decision != _session.CONTINUE:
            raise _session.TrialInterrupted(self.decision)

    def _serve(self) -> None:
        by_conn = {id(r.conn): r for r in self.ranks}
        stop_deadline: Optional[float] = None
        while not all(r.finished for r in self.ranks):
            live = [r for r in self.ranks if not r.finished]
            timeout = self._next_timeout(stop_deadline)
            for conn in wait([r.conn for r in live], timeout):
                self._handle(by_conn[id(conn)])
            for rank in live:  # a process gone without saying "done" or "error"
                if not rank.finished and rank.process.poll() is not None:
                    self._drain(rank)
                    if not rank.finished:
                        self._died(rank)
            if self.decision != _session.CONTINUE:
                stop_deadline = stop_deadline or time.monotonic() + _STOP_GRACE_S
                if time.monotonic() >= stop_deadline:
                    return  # ranks that did not unwind in time are killed by _shutdown
                continue
            self._check_counts()

    def _died(self, rank: _Rank) -> None:
        try:
            code = rank.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        raise _group_error(
            f"Training worker rank {rank.rank} (pid {rank.process.pid}) died with exit code "
            f"{code}{_signal_name(code)}; the other workers were stopped.", rank.rank)

    def _drain(self, rank: _Rank) -> None:
        try:
            while not rank.finished and rank.conn.poll():
                self._handle(rank)
        except (EOFError, OSError):
            pass

    def _next_timeout(self, stop_deadline: Optional[float]) -> float:
        now = time.monotonic()
        timeout = 1.0
        if stop_deadline is not None:
            timeout = min(timeout, max(0.0, stop_deadline - now))
        pending = self.rounds.get(self.recorded + 1)
        if pending is not None:
            timeout = min(timeout, max(0.0, pending.started + self.spec.report_timeout_s - now))
        return timeout

    def _handle(self, rank: _Rank) -> None:
        try:
            msg = rank.conn.recv()
        except (EOFError, OSError):
            if not rank.finished:
                self._died(rank)
            return
        if isinstance(msg, RankReport):
            rank.reports = msg.index
            self._on_report(rank, msg.index, msg.metrics, msg.checkpoint)
        elif isinstance(msg, RankDone):
            rank.finished = True
        elif isinstance(msg, RankFailed):
            rank.finished = True
            raise _group_error(
                f"Training worker rank {msg.rank} failed; the other workers were stopped.\n"
                f"{msg.error_text}", msg.rank, msg.error)
        else:
            raise RuntimeError(f"unexpected message from training worker rank {rank.rank}: "
                               f"{type(msg).__name__}")

    def _on_report(self, rank: _Rank, index: int, metrics, checkpoint) -> None:
        if self.decision != _session.CONTINUE:
            rank.conn.send(self.decision)
            return
        rnd = self.rounds.setdefault(index, _Round())
        rnd.ranks[rank.rank] = metrics
        if checkpoint is not None:
            # Copy it before answering: the rank may delete its directory once report returns.
            staged = os.path.join(self._tmp, f"round_{index}_rank_{rank.rank}")
            checkpoint.to_directory(staged)
            rnd.checkpoint_dirs[rank.rank] = staged
        rank.conn.send(_session.CONTINUE)
        while (self.recorded + 1) in self.rounds and len(
                self.rounds[self.recorded + 1].ranks) == len(self.ranks):
            self._record(self.recorded + 1)
            if self.decision != _session.CONTINUE:
                break

    def _record(self, index: int) -> None:
        from tunelib.checkpoint import Checkpoint

        rnd = self.rounds.pop(index)
        merged = merge_rank_checkpoints(rnd.checkpoint_dirs)
        ckpt = Checkpoint.from_directory(merged) if merged else None
        try:
            self.decision = self.session.report(rnd.ranks[0], ckpt)
        finally:
            for staged in rnd.checkpoint_dirs.values():
                shutil.rmtree(staged, ignore_errors=True)
        self.recorded = index

    def _check_counts(self) -> None:
        """Every rank must report the same number of times: fail, never hang, otherwise."""
        counts = {r.rank: r.reports for r in self.ranks}
        most = max(counts.values())
        for r in self.ranks:
            if r.finished and r.reports < most:
                raise _group_error(
                    f"Training worker rank {r.rank} finished after {r.reports} train.report() "
                    f"calls while other ranks reported more ({_counts(counts)}). Every worker "
                    "must call train.report() the same number of times.", r.rank)
        pending = self.rounds.get(self.recorded + 1)
        if pending is not None:
            waited = time.monotonic() - pending.started
            if waited >= self.spec.report_timeout_s:
                missing = [r for r in range(len(self.ranks)) if r not in pending.ranks]
                raise _group_error(
                    f"Training worker rank(s) {missing} did not call train.report() for round "
                    f"{self.recorded + 1} within {self.spec.report_timeout_s:g} s of rank(s) "
                    f"{sorted(pending.ranks)} reporting it ({_counts(counts)}). Every worker "
                    f"must call train.report() the same number of times (timeout: "
                    f"{REPORT_TIMEOUT_ENV}).", missing[0] if missing else None)


def merge_rank_checkpoints(dirs: Dict[int, str]) -> Optional[str]:
    """One checkpoint directory from the ranks' ``{rank: dir}``: the lowest rank's, with
    every file of the other ranks that it lacks moved in (a file several ranks wrote is
    the lowest rank's). None when no rank gave a checkpoint."""
    if not dirs:
        return None
    ranks = sorted(dirs)
    merged = dirs[ranks[0]]
    for rank in ranks[1:]:
        src = dirs[rank]
        for root, _, files in os.walk(src):
            target_dir = os.path.join(merged, os.path.relpath(root, src))
            os.makedirs(target_dir, exist_ok=True)
            for name in files:
                target = os.path.join(target_dir, name)
                if not os.path.lexists(target):
                    shutil.move(os.path.join(root, name), target)
    return merged


def _counts(counts: Dict[int, int]) -> str:
    return "reports per rank: " + ", ".join(f"rank {r}: {n}" for r, n in sorted(counts.items()))


def _group_error(message: str, rank: Optional[int], exc: Optional[BaseException] = None):
    from tunelib.train._config import WorkerGroupError

    failures = {} if rank is None else {rank: exc if exc is not None else RuntimeError(message)}
    return WorkerGroupError(message, failures)


def _signal_name(code: Optional[int]) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            return ""
    return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
