"""The ``tunelib`` Prefect worker type: flow runs start in pre-started, warm processes.

    prefect work-pool create tunelib --type tunelib
    prefect worker start --pool tunelib --type tunelib --limit 2

The process worker starts a fresh ``python -m prefect.engine`` for every flow run:
importing Prefect, tunelib and the trainable costs ≈ 5 s a trial on 2 cores, more than a
short trial runs. This worker keeps ``--limit`` (default 1) Python processes
(:mod:`tunelib.prefect._warm_pool_main`) that imported all of that before any run
arrived, and hands each flow run to an idle one. The process runs it with Prefect's
engine in-process, exactly as ``python -m prefect.engine`` would: still one flow run per
trial attempt, with Prefect's states, in-place retries, logs and cancellation.

* Submission: the base worker claims the run (Pending, Submitting) and calls
  :meth:`TunelibWorker.run`; it takes an idle warm process (or starts one when all are
  busy and ``--limit`` allows more), sends it the run's id and environment, and reports
  ``<hostname>:<pid>`` of that process as the run's ``infrastructure_pid``. Two trials
  run one after another on a worker show the same pid.
* Crash: a warm process that dies during a run returns its exit code, and the base
  worker proposes Crashed as for a process worker's non-zero exit; the worker starts a
  fresh process in its place.
* Cancel: the worker watches its running flow runs for Cancelling (Prefect's
  ``FlowRunCancellingObserver``, websocket with polling fallback) and, like the process
  worker, SIGTERMs the process running it (SIGKILL after a grace period), marks the run
  Cancelled and starts a fresh process. ``kill_infrastructure`` does the same for a pid
  of this worker's.
* Registration: the ``prefect.collections`` entry point ``tunelib`` in pyproject.toml
  imports this module; defining the class registers ``type = "tunelib"`` with Prefect's
  worker registry, so ``prefect worker start --type tunelib`` and ``prefect work-pool
  create --type tunelib`` find it.

Code that changed on disk is not re-imported by a warm process (a module stays in
``sys.modules``): restart the worker after editing the trainable's module. A trainable
pickled by value (defined in the driver's script) is reloaded whenever it changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import anyio
import anyio.abc
from prefect._internal.observers import FlowRunCancellingObserver
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound
from prefect.workers.base import (
    BaseJobConfiguration,
    BaseVariables,
    BaseWorker,
    BaseWorkerResult,
)
from pydantic import Field

__all__ = ["TunelibJobConfiguration", "TunelibVariables", "TunelibWorker",
           "TunelibWorkerResult"]

WORKER_TYPE = "tunelib"
KILL_GRACE_S = 10.0  # SIGTERM, then SIGKILL: the trial unwinds as a KeyboardInterrupt first


class TunelibJobConfiguration(BaseJobConfiguration):
    """A flow run's job on a tunelib worker: its environment and working directory."""

    working_dir: Optional[Path] = Field(default=None)


class TunelibVariables(BaseVariables):
    """The work pool's variables (``prefect work-pool create --type tunelib``)."""

    working_dir: Optional[Path] = Field(
        default=None,
        title="Working Directory",
        description=("The directory a flow run starts in (before the deployment's pull "
                     "steps); a fresh temporary directory per run when empty."),
    )


class TunelibWorkerResult(BaseWorkerResult):
    """How a flow run's warm process ended it: the code ``python -m prefect.engine`` would
    have exited with, or the process's exit status when it died."""


class WarmProcessDied(RuntimeError):
    """A warm process ended before it was ready (an import failed: see the worker's log)."""


class _WarmProcess:
    """One pre-started ``tunelib.prefect._warm_pool_main`` process, worker side."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.pid = proc.pid
        self.infrastructure_pid = f"{socket.gethostname()}:{proc.pid}"
        self.flow_run: Optional[FlowRun] = None   # the run it executes, if any
        self.cancelled = False
        self._ready: Optional[asyncio.Task] = None

    @classmethod
    async def start(cls) -> "_WarmProcess":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tunelib.prefect._warm_pool_main",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            # its own session, as the process worker's runs: a Ctrl-C of the worker's
            # terminal does not kill the trials mid-iteration
            start_new_session=True)
        process = cls(proc)
        process._ready = asyncio.ensure_future(process._read_ready())
        return process

    async def _read_ready(self) -> None:
        message = await self._read()
        if message is None or "ready" not in message:
            raise WarmProcessDied(
                f"The tunelib worker's warm process {self.pid} exited with status "
                f"{await self.proc.wait()} before it was ready (an import failed? its "
                "traceback is in the worker's output).")

    async def wait_ready(self) -> None:
        await asyncio.shield(self._ready)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _read(self) -> Optional[dict]:
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return None
            try:
                return json.loads(line)
            except ValueError:
                continue  # not ours (nothing else should write here)

    async def execute(self, flow_run: FlowRun, configuration: TunelibJobConfiguration,
                      started) -> int:
        """Run ``flow_run``; ``started()`` once it was handed over. The run's exit code, or
        the process's exit status when it died during the run."""
        self.flow_run = flow_run
        request = {"flow_run_id": str(flow_run.id), "env": configuration.env,
                   "working_dir": (str(configuration.working_dir)
                                   if configuration.working_dir else None)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died just now: the read below sees that
        started()
        message = await self._read()
        self.flow_run = None
        if message is not None and "exit" in message:
            return int(message["exit"])
        return await self.proc.wait() or 1

    async def kill(self, grace_s: float) -> None:
        """SIGTERM (the trial unwinds, Prefect's engine ends the run), then SIGKILL."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
            if not self.alive:
                return
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(self.proc.wait(), wait_s)
                return
            except asyncio.TimeoutError:
                continue

    async def stop(self) -> None:
        """End an idle process: its stdin closes, it exits."""
        if self.alive and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            await self.kill(0)


class TunelibWorker(BaseWorker[TunelibJobConfiguration, TunelibVariables,
                               TunelibWorkerResult]):
    """A Prefect worker whose flow runs start in warm, pre-imported Python processes.

    Example::

        prefect work-pool create tunelib --type tunelib
        PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_WORKER_PREFETCH_SECONDS=0 \\
            prefect worker start --pool tunelib --type tunelib --limit 2
    """

    type = WORKER_TYPE
    job_configuration = TunelibJobConfiguration
    job_configuration_variables = TunelibVariables

    _description = ("Run each flow run in a warm, pre-started Python process that already "
                    "imported Prefect and tunelib: a tunelib trial starts in about a "
                    "second (the process worker pays a new interpreter each).")
    _display_name = "tunelib (warm processes)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._idle: List[_WarmProcess] = []
        self._busy: Dict[uuid.UUID, _WarmProcess] = {}
        self._run_observer: Optional[FlowRunCancellingObserver] = None

    # ------------------------------------------------------------------ lifecycle
    async def setup(self) -> None:
        await super().setup()
        # warm before the first run arrives: one process per run the worker may run
        for _ in range(self._limit or 1):
            self._idle.append(await _WarmProcess.start())
        # the base worker watches runs only while it submits them (and only with
        # PREFECT_WORKER_ENABLE_CANCELLATION); a warm process runs them afterwards, so its
        # runs are watched here until they end, as the process worker's runner does
        self._run_observer = await self._exit_stack.enter_async_context(
            FlowRunCancellingObserver(
                on_cancelling=lambda flow_run_id: self._runs_task_group.start_soon(
                    self._cancel_run, flow_run_id)))

    async def teardown(self, *exc_info) -> None:
        try:
            await super().teardown(*exc_info)   # waits for the runs in progress
        finally:
            idle, self._idle = self._idle, []
            for process in idle + list(self._busy.values()):
                await process.stop()

    # ------------------------------------------------------------------ runs
    async def _acquire(self) -> _WarmProcess:
        """An idle, ready process; a new one when none is idle (no ``--limit``, or one
        was replaced and is still importing)."""
        while self._idle:
            process = self._idle.pop(0)
            if process.alive:
                await process.wait_ready()
                return process
        process = await _WarmProcess.start()
        await process.wait_ready()
        return process

    async def run(self, flow_run: FlowRun, configuration: TunelibJobConfiguration,
                  task_status: Optional[anyio.abc.TaskStatus] = None) -> TunelibWorkerResult:
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        logger = self.get_flow_run_logger(flow_run)
        if configuration.command:
            logger.warning("The tunelib worker runs flow runs with Prefect's engine in a "
                           "warm process; the job's command %r is not used.",
                           configuration.command)
        process = await self._acquire()
        self._busy[flow_run.id] = process
        if self._run_observer is not None:
            self._run_observer.add_in_flight_flow_run_id(flow_run.id)
        try:
            code = await process.execute(
                flow_run, configuration,
                started=lambda: task_status.started(process.infrastructure_pid))
        finally:
            self._busy.pop(flow_run.id, None)
            if self._run_observer is not None:
                self._run_observer.remove_in_flight_flow_run_id(flow_run.id)
        if process.alive:
            self._idle.append(process)
        else:
            if not process.cancelled:
                logger.warning("The warm process %s running flow run %s died (status %s); "
                               "starting a fresh one.", process.pid, flow_run.id, code)
            self._idle.append(await _WarmProcess.start())
        if process.cancelled:
            code = 0  # the cancel marked the run Cancelled: no Crashed on top of it
        return TunelibWorkerResult(status_code=code, identifier=process.infrastructure_pid)

    # ------------------------------------------------------------------ cancel
    async def _cancel_run(self, flow_run_id: uuid.UUID) -> None:
        """Cancelling: kill the warm process running the run, mark it Cancelled. Runs not
        (or no longer) in a warm process get the base worker's handling."""
        process = self._busy.get(flow_run_id)
        if process is None or process.cancelled:
            await super()._cancel_run(flow_run_id)
            return
        flow_run = process.flow_run or await self.client.read_flow_run(flow_run_id)
        await self._kill(process)
        await self._mark_flow_run_as_cancelled(flow_run, state_updates={
            "message": f"Flow run cancelled: the tunelib worker {self.name!r} killed its "
                       f"process {process.infrastructure_pid}."})
        self.get_flow_run_logger(flow_run).info("Cancelled flow run '%s'", flow_run_id)

    async def _kill(self, process: _WarmProcess, grace_s: float = KILL_GRACE_S) -> None:
        process.cancelled = True
        await process.kill(grace_s)

    async def kill_infrastructure(self, infrastructure_pid: str,
                                  configuration: TunelibJobConfiguration,
                                  grace_seconds: int = 30) -> None:
        host, _, pid = infrastructure_pid.rpartition(":")
        if host != socket.gethostname():
            raise InfrastructureNotAvailable(
                f"Flow run process {infrastructure_pid!r} runs on host {host!r}; this "
                f"tunelib worker runs on {socket.gethostname()!r} and cannot kill it.")
        for process in list(self._busy.values()):
            if str(process.pid) == pid:
                await self._kill(process, min(float(grace_seconds), KILL_GRACE_S))
                return
        raise InfrastructureNotFound(
            f"No warm process {pid} of this tunelib worker runs a flow run.")
