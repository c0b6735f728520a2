"""Cancel from Prefect: noticing that the experiment's run, or a trial's, was set to
Cancelling (or Cancelled) in the UI or CLI, and telling the engine once.

The recorder's writer polls only while a callback is registered (``Recorder.watch_cancel``)
and the experiment runs: at most once every ``POLL_S`` seconds, ONE request
(``read_flow_runs`` filtered by the ids of the experiment run and the trial runs still
live - attached and final ones left out - and by state type CANCELLING/CANCELLED). The
experiment's run cancelled -> ``callback(None)`` once (trial runs are not reported after
that: the whole experiment stops); a trial's -> ``callback(trial_id)`` once.

Example::

    watch = CancelWatch()
    watch.set_callback(print)
    ids = watch.ids_to_poll(exp_id, {"t1": run_id})   # {} when nothing is to be polled
    watch.notify(cancelled_ids, ids)                  # prints None or "t1", once each
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

log = logging.getLogger("tunelib.recorder")

POLL_S = 1.0
EXPERIMENT = None   # what the callback gets for the experiment's run


class CancelWatch:
    """Which runs to poll, and whom to tell (see the module docstring)."""

    def __init__(self, poll_s: float = POLL_S):
        self._callback: Optional[Callable[[Optional[str]], None]] = None
        self._poll_s = poll_s
        self._last_poll = 0.0
        self._told: Set[Optional[str]] = set()

    def set_callback(self, callback: Optional[Callable[[Optional[str]], None]]) -> None:
        self._callback = callback

    def due(self, now: Optional[float] = None) -> bool:
        """A callback is registered, the experiment was not reported, and ``POLL_S`` passed."""
        now = time.monotonic() if now is None else now
        if self._callback is None or EXPERIMENT in self._told:
            return False
        if now - self._last_poll < self._poll_s:
            return False
        self._last_poll = now
        return True

    def ids_to_poll(self, experiment_run: Optional[str],
                    live_trial_runs: Dict[str, str]) -> Dict[str, Optional[str]]:
        """flow run id -> trial id (None for the experiment's) of the runs to ask about."""
        ids: Dict[str, Optional[str]] = {}
        if experiment_run is not None:
            ids[experiment_run] = EXPERIMENT
        for trial_id, run_id in live_trial_runs.items():
            if trial_id not in self._told:
                ids[run_id] = trial_id
        return ids

    def notify(self, cancelled_run_ids: Iterable[str],
               polled: Dict[str, Optional[str]]) -> List[Optional[str]]:
        """Call the callback once per newly cancelled run (the experiment first); returns
        who was told."""
        hits = {polled[run_id] for run_id in cancelled_run_ids if run_id in polled}
        order = [EXPERIMENT] if EXPERIMENT in hits else sorted(h for h in hits if h is not None)
        told = []
        for who in order:
            if who in self._told:
                continue
            self._told.add(who)
            told.append(who)
            try:
                self._callback(who)
            except Exception:  # the engine's callback must not stop the recorder
                log.exception("the cancel callback raised")
        return told


async def cancelled_runs(client: Any, run_ids: Iterable[str]) -> List[str]:
    """The ids among ``run_ids`` whose state is Cancelling or Cancelled (one request)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    ids = [uuid.UUID(r) for r in run_ids]
    if not ids:
        return []
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=ids),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.CANCELLING, StateType.CANCELLED]))),
        limit=len(ids))
    return [str(r.id) for r in runs]
