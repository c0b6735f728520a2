"""The Prefect-workers executor's calls to the Prefect API (one synchronous client).

``tunelib.executor.prefect_workers`` keeps the protocol (storage channel, attempts,
heartbeats); every Prefect call it makes is a method of :class:`WorkersAPI`: connect and
check the pool and deployment (with errors that name the command that fixes them), create
a trial's deployment run with its retries as a child of the experiment's run (through a
stand-in task run there, as Prefect links a subflow), cancel it, read the runs' states, tell
a cancelled run from a crashed one, mark a dead one crashed. A server that does not answer is retried with doubling back-off, then a
:class:`PrefectWorkersError`.

Example::

    api = WorkersAPI(api_url=None, connect_attempts=6)   # PREFECT_API_URL
    api.connect()
    api.check_pool_and_deployment("tunelib", "trial/tunelib-trial")
    parent = api.create_subflow_task_run(experiment_run_id, "t0", "train_fn_00000", ["exp"])
    run_id = api.create_trial_run("t0", parameters, name="train_fn_00000",
                                  tags=["exp", "t0"], retries=retries_for(2),
                                  parent_task_run_id=parent)
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from tunelib.prefect._payloads import UNLIMITED_RETRIES, retries_for

__all__ = ["PrefectWorkersError", "RunState", "WorkersAPI", "retries_for", "UNLIMITED_RETRIES"]

# state types after which a flow run does nothing more
FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})


class PrefectWorkersError(RuntimeError):
    """The Prefect side of the scale-out executor is not usable (no server, pool, deployment)."""


@dataclass(frozen=True)
class RunState:
    """A flow run's current state as the executor needs it."""

    type: str            # Prefect's state type: "PENDING", "RUNNING", "CRASHED", ...
    message: str = ""

    @property
    def final(self) -> bool:
        return self.type in FINAL_STATE_TYPES


class WorkersAPI:
    """The executor's Prefect client (see the module docstring)."""

    def __init__(self, api_url: Optional[str], connect_attempts: int = 6):
        self._given_url = api_url
        self.connect_attempts = max(1, int(connect_attempts))
        self.api_url: Optional[str] = None
        self._client = None
        self._deployment_id = None

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call the API; retry a server that does not answer, with doubling back-off."""
        import httpx

        delay = 0.5
        for attempt in range(1, self.connect_attempts + 1):
            try:
                return fn()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                    httpx.RemoteProtocolError) as exc:
                if attempt >= self.connect_attempts:
                    raise PrefectWorkersError(
                        f"The Prefect API at {self.api_url} did not answer ({what}) after "
                        f"{attempt} attempts: {exc!r}. Start it with `prefect server start "
                        "--host 127.0.0.1 --port 4200` and set PREFECT_API_URL (see "
                        "deployments/README.md)."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    # ------------------------------------------------------------------ set-up
    def connect(self) -> None:
        from prefect.client.orchestration import SyncPrefectClient

        self.api_url = self._given_url or os.environ.get("PREFECT_API_URL")
        if not self.api_url:
            from prefect.settings import get_current_settings

            self.api_url = get_current_settings().api.url
        if not self.api_url:
            raise PrefectWorkersError(
                "PrefectWorkers needs a Prefect server that workers share: set PREFECT_API_URL "
                "(e.g. http://127.0.0.1:4200/api) or PrefectWorkers(api_url=...). See "
                "deployments/README.md."
            )
        self._client = SyncPrefectClient(self.api_url)
        self._client.__enter__()
        self._call("connecting", self._healthcheck)

    def _healthcheck(self) -> None:
        error = self._client.api_healthcheck()
        if error is not None:
            raise error

    def check_pool_and_deployment(self, pool: str, deployment: str) -> None:
        """Both exist and the deployment is in the pool; else an error naming the fix."""
        from prefect.exceptions import ObjectNotFound

        try:
            self._call("reading the work pool", lambda: self._client.read_work_pool(pool))
        except ObjectNotFound:
            raise PrefectWorkersError(
                f"The Prefect work pool {pool!r} does not exist. Create it with "
                f"`prefect work-pool create {pool} --type tunelib` (warm workers; `--type "
                f"process` works too), then deploy the trial flow "
                f"with `python deployments/deploy.py --pool {pool}`."
            ) from None
        try:
            found = self._call("reading the deployment",
                               lambda: self._client.read_deployment_by_name(deployment))
        except ObjectNotFound:
            raise PrefectWorkersError(
                f"The deployment {deployment!r} does not exist. Create it with `python "
                f"deployments/deploy.py --pool {pool} --name {deployment.split('/', 1)[1]}` "
                "(or `prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all`)."
            ) from None
        if found.work_pool_name != pool:
            raise PrefectWorkersError(
                f"The deployment {deployment!r} belongs to work pool {found.work_pool_name!r}, "
                f"not {pool!r}: pass PrefectWorkers(work_pool={found.work_pool_name!r}) or "
                f"redeploy with `python deployments/deploy.py --pool {pool}`."
            )
        self._deployment_id = found.id

    # ------------------------------------------------------------------ runs
    def create_subflow_task_run(self, experiment_flow_run_id: str, trial_id: str,
                                name: str, tags: List[str]) -> str:
        """The task run in the experiment's flow run that stands for a trial's subflow, as
        Prefect's engine creates one for a child flow run (and as the recorder does for a
        local trial): the ``trial`` flow's task key, ``trial_id`` its dynamic key, Pending."""
        from prefect.states import Pending
        from prefect.tasks import Task

        from tunelib.prefect.flows import trial

        task_run = self._call("creating the trial's task run in the experiment", lambda: (
            self._client.create_task_run(
                Task(name=trial.name, fn=trial.fn), uuid.UUID(experiment_flow_run_id),
                dynamic_key=trial_id, name=name, extra_tags=tags, state=Pending(),
                task_inputs={})))
        return str(task_run.id)

    def create_trial_run(self, trial_id: str, parameters: Dict[str, Any], name: str,
                         tags: List[str], retries: int,
                         parent_task_run_id: Optional[str] = None) -> str:
        """A new run of the trial deployment (as ``run_deployment(..., timeout=0)`` makes),
        with ``retries``, the child of ``parent_task_run_id`` when given (see
        ``create_subflow_task_run``); returns its id at once."""
        from prefect.client.schemas.objects import FlowRunPolicy

        parent = uuid.UUID(parent_task_run_id) if parent_task_run_id else None
        flow_run = self._call("creating the trial's flow run", lambda: (
            self._client.create_flow_run_from_deployment(
                self._deployment_id, parameters=parameters, name=name, tags=tags,
                idempotency_key=f"tunelib-{trial_id}-{uuid.uuid4().hex}",
                parent_task_run_id=parent,
            )))
        # max_failures is per trial, Prefect's retries per flow run: give this run what is left
        self._call("setting the trial's retries", lambda: self._client.update_flow_run(
            flow_run.id, empirical_policy=FlowRunPolicy(retries=retries, retry_delay=0)))
        return str(flow_run.id)

    def cancel(self, flow_run_id: str) -> None:
        """Ask for the run's cancellation (the worker owning its process kills it); best
        effort, for shutting down. Not forced: the server refuses it for a run that ended
        already (the driver's view of its state may be a poll old), which keeps its end."""
        from prefect.states import Cancelling

        try:
            self._call("cancelling a trial's flow run", lambda: self._client.set_flow_run_state(
                flow_run_id, Cancelling(message="stopped by tunelib"), force=False))
        except Exception:
            pass

    def cancel_state(self, flow_run_id: str) -> Optional[RunState]:
        """The Cancelling/Cancelled state the run got since it last started running, or None.

        A cancelled run's process is SIGTERMed by its worker; Prefect's engine may record that
        as Crashed before the worker sets Cancelled, so the current state alone does not say
        it was a cancel. None too when the history cannot be read."""
        try:
            states = self._call("reading a trial's flow run states",
                                lambda: self._client.read_flow_run_states(uuid.UUID(flow_run_id)))
        except Exception:
            return None
        found = None
        for state in sorted(states, key=lambda st: st.timestamp):
            if state.type.value == "RUNNING":
                found = None
            elif state.type.value in ("CANCELLING", "CANCELLED"):
                found = RunState(state.type.value, state.message or "")
        return found

    def read_states(self, flow_run_ids: List[str]) -> Dict[str, RunState]:
        """The current state of each run that has one, by id."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        ids = [uuid.UUID(i) for i in flow_run_ids]
        flow_runs = self._call("reading the trials' flow run states", lambda: (
            self._client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))))
        return {str(fr.id): RunState(fr.state.type.value, fr.state.message or "")
                for fr in flow_runs if fr.state is not None}

    def mark_crashed(self, flow_run_id: str, message: str) -> RunState:
        """Set the run CRASHED (best effort: its executor reports the error either way)."""
        from prefect.states import Crashed

        try:
            self._call("marking a dead trial's flow run crashed",
                       lambda: self._client.set_flow_run_state(
                           flow_run_id, Crashed(message=message), force=True))
        except Exception:
            pass
        return RunState("CRASHED", message)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.__exit__(None, None, None)
            except Exception:
                pass
            self._client = None
