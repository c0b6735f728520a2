"""The records of one experiment: which writes each engine event schedules, and in which
order (runs on the recorder's event loop; see :mod:`tunelib.prefect.recorder`).

Every trial is one lane of the :class:`~tunelib.prefect._op_queue.OpQueue`: its writes
happen in event order, and each waits for the experiment's flow run (its parent). The
experiment's own writes are the ``EXPERIMENT`` lane; its final state waits for every trial.

Logs (:mod:`~tunelib.prefect._logs`): a trial's lines (and the traceback of each failed
attempt) wait in its bounded buffer and go out as batches on its lane - so they wait for
its flow run - when the oldest is ``window`` s old and the lane is idle, before its next
state change, and at close; the experiment's lines (and its final summary) go on the
``EXPERIMENT_LOGS`` lane.

Whole trials (tunelib's embedded server only, ``PrefectWrites.bulk``): a trial's flow run
is not created when it starts; its start waits up to ``DEFER_S`` s (at least ``window``).
When it ends within that time it is written whole - flow run with its states at their true times, the
subflow's stand-in task run, its iteration task run, log lines and metric table - with
other such trials in ONE request on the ``BULK`` lane (``_bulk_app``). When it is still
running after that, fails, pauses, or its run is asked for (a trainable using
Prefect), its start is written as usual and it goes on through the REST writes. A server
without the route answers the first batch 404: those trials are written through REST.

Nesting: with a ``CallerRun`` the experiment's flow run is a subflow of the caller's run:
a Pending task run in the caller's flow run stands for it (``__parents__`` naming the
caller's task run when fit() ran inside a task), as Prefect's engine makes it for a
subflow, and the experiment run's ``parent_task_run_id`` is that task run.

A server that stops answering (a connection error reaches a write: the client retries
those itself first) makes the record ``gone``: it stops scheduling and ``unrecorded_counts``
says what was lost.

Artifacts (:mod:`~tunelib.prefect._artifact_book` says when, ``_artifact_content`` what):
the leaderboard, progress and learning curves are rewritten on the ``ARTIFACTS`` lane, one
write at a time, when the book says they are due (checked by the writer loop's
``flush_due``), and once more before the experiment's final state; a trial's metric table
and checkpoint links go on its lane after its final state (or after a long pause).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Dict, Hashable, List, Optional, Tuple

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome
from tunelib.prefect._artifact_book import CAUGHT_UP_OPS, ArtifactBook, Rewritten
from tunelib.prefect._artifacts import ArtifactWriter
from tunelib.prefect._caller import CallerRun
from tunelib.prefect._logs import LogBuffer, log_bodies, summary_lines, traceback_line
from tunelib.prefect._op_queue import OpQueue
from tunelib.prefect._payloads import (
    StateChange,
    StateKind,
    StateSpec,
    hms,
    iterations_message,
    jsonable,
    summary_text,
    task_run_name,
)
from tunelib.prefect._trial_runs import Batch, TrialRun
from tunelib.prefect._writes import PrefectWrites, is_connection_error
from tunelib.recording import LogLine

log = logging.getLogger("tunelib.recorder")

EXPERIMENT = ("experiment",)   # the experiment's lane (trial lanes are trial ids)
ARTIFACTS = ("experiment", "artifacts")   # its rewritten artifacts
EXPERIMENT_LOGS = ("experiment", "logs")  # its log lines
BULK = ("experiment", "whole trials")      # trials written whole, a batch per write
_EXPERIMENT_LANES = (EXPERIMENT, ARTIFACTS, EXPERIMENT_LOGS, BULK)
BULK_BATCH = 1000   # trials per request at most
DEFER_S = 5.0       # a trial's start waits this long (at least ``window``) to be written whole
MAX_ERRORS = 50   # error lines kept (a dead server is one line, see ``gone``)


class ExperimentRecord:
    """Turns one experiment's events into ordered writes through ``writes``.

    Failed writes are appended to ``errors`` (and counted in ``stats["writes_failed"]``);
    they never block the writes after them. ``caller``: the run the experiment nests under.
    """

    def __init__(self, writes: PrefectWrites, stats: Dict[str, Any], errors: List[str],
                 caller: Optional[CallerRun] = None, wanted: Optional[set] = None):
        from prefect.tasks import Task

        from tunelib.prefect.flows import experiment, iteration, trial

        self._writes = writes
        self._stats = stats
        self._errors = errors
        self._ops = OpQueue(self._on_error)
        self._trials: Dict[str, TrialRun] = {}
        self._iteration_task = iteration
        # the subflow's stand-in task run, as Prefect's engine makes it for a child flow run
        self._subflow_task = Task(name=trial.name, fn=trial.fn)
        self._flow_names = {"experiment": experiment.name, "trial": trial.name}
        self._name: Optional[str] = None
        self._tags: List[str] = []
        self.experiment_flow_run_id: Optional[str] = None
        self._created: Optional[asyncio.Task] = None   # the experiment's flow run
        self._book = ArtifactBook()
        self._artifacts = ArtifactWriter(writes, self._book)
        self._finishing = False   # experiment_finished seen: only the final artifacts now
        self._caller = caller
        self._experiment_task = Task(name=experiment.name, fn=experiment.fn)
        self.parent_task_run_id: Optional[str] = None   # the experiment's, when nested
        self._logs = LogBuffer()   # the experiment's own lines
        self.gone: Optional[str] = None   # why the server is taken as gone
        self._failed: Counter = Counter()   # category -> writes lost after it went
        self._abandoned_detail: List[str] = []
        self._deferred: Dict[str, TrialRun] = {}   # started, start not written yet
        self._whole: List[TrialRun] = []           # ended while deferred: to write whole
        # trials whose run is asked for (a trainable using Prefect): filled by any thread,
        # taken by the writer loop, which writes a deferred one's start at once
        self._wanted: set = set() if wanted is None else wanted
        self._unflushed: Dict[str, TrialRun] = {}  # trials holding results or log lines

    def trial_flow_run_id(self, trial_id: str) -> Optional[str]:
        tr = self._trials.get(trial_id)
        return tr.flow_run_id if tr else None

    # ------------------------------------------------------------------ events
    def experiment_started(self, t: float, name: str, parameters: dict, tags: list) -> None:
        self._name = name
        self._tags = list(dict.fromkeys([name, *tags]))
        self._book.experiment_started(name, parameters or {}, t)
        self._created = self._ops.schedule(EXPERIMENT, "experiment flow run",
                                           self._create_experiment(jsonable(parameters or {}), t))

    def trial_attached(self, t: float, trial_id: str, flow_run_id: str) -> None:
        tr = self._trial(trial_id)
        self._flush(tr)  # results of the previous run go to that run
        tr.attach(flow_run_id)

    def trial_started(self, t: float, trial_id: str, trial_name: str, config: dict,
                      max_failures: int, attempt: int) -> None:
        tr = self._trial(trial_id, trial_name)
        tr.name = trial_name
        self._flush(tr)
        change = tr.start(attempt, config, max_failures)
        if (change is not None and change.create and self._writes.bulk and not self.gone
                and trial_id not in self._wanted):
            tr.deferred = (t, change)
            self._deferred[trial_id] = tr
        else:
            self._change(tr, t, change)
        self._book.trial_started(trial_id, trial_name, config, t)

    def trial_result(self, t: float, trial_id: str, result: dict) -> None:
        tr = self._trial(trial_id)
        tr.add_result(t, result)
        self._unflushed[trial_id] = tr
        self._book.trial_result(trial_id, result)

    def trial_failed(self, t: float, trial_id: str, error: str, will_retry: bool) -> None:
        tr = self._trial(trial_id)
        if not tr.attached:  # an attached run's engine logs its own traceback
            note = f" (attempt {tr.run_count}{', will retry' if will_retry else ''})"
            tr.logs.add([traceback_line(t, error, note)])
            self._unflushed[trial_id] = tr
        self._promote(tr)
        self._flush(tr)
        self._change(tr, t, tr.fail(error, will_retry))
        self._book.trial_failed(trial_id, will_retry)

    def trial_paused(self, t: float, trial_id: str) -> None:
        tr = self._trial(trial_id)
        self._promote(tr)
        self._flush(tr)
        self._change(tr, t, tr.pause())
        self._book.trial_paused(trial_id, t)

    def trial_finished(self, t: float, trial_id: str, outcome: TrialOutcome,
                       message: str = "") -> None:
        tr = self._trial(trial_id)
        if tr.deferred is not None:   # started and ended between two flushes: written whole
            tr.deferred_start, tr.deferred = tr.deferred, None
            tr.ended = (t, tr.finish(outcome, message))
            self._book.trial_finished(trial_id, outcome)
            self._deferred.pop(trial_id, None)
            self._whole.append(tr)
            return
        self._flush(tr)
        self._change(tr, t, tr.finish(outcome, message))
        self._book.trial_finished(trial_id, outcome)
        if self._book.claim_trial_write(trial_id):
            self._schedule_trial_artifacts(tr)

    def trial_logs(self, t: float, trial_id: str, records: List[LogLine]) -> None:
        tr = self._trial(trial_id)
        tr.logs.add(LogLine(*r) for r in records)
        self._unflushed[trial_id] = tr

    def experiment_log(self, t: float, level: int, message: str) -> None:
        self._logs.add([LogLine(t, int(level), "tunelib.experiment", str(message))])

    def experiment_finished(self, t: float, outcome: ExperimentOutcome, rows: list) -> None:
        self._finishing = True
        for tr in list(self._deferred.values()):
            self._promote(tr)
        self._write_whole(everything=True)
        for tr in self._trials.values():
            self._flush(tr)
        self._logs.add([LogLine(t, 20, "tunelib.experiment",
                                f"experiment {outcome.value.lower()}: {len(rows or [])} trials "
                                f"({summary_text(rows or [])})"), *summary_lines(t, rows or [])])
        self._flush_experiment_logs()
        self._book.summary_rows(rows or [])
        whole = {tr.trial_id for tr in self._trials.values() if tr.ended is not None}
        # paused or cut short at the end (a trial written whole takes its own with it)
        for trial_id in self._book.unwritten_trials(skip=whole):
            self._schedule_trial_artifacts(self._trials[trial_id])
        self._ops.schedule(EXPERIMENT, "final artifacts and final experiment state",
                           self._finish_experiment(outcome, jsonable(rows or []), t),
                           after=self._ops.tails(exclude=[EXPERIMENT]))

    # ------------------------------------------------------------------ coalescing
    def flush_due(self, window: float, closing: bool) -> None:
        """Write the buffers whose oldest result waited ``window`` s (all when closing) and
        whose trial has nothing in flight."""
        if self.gone:
            return
        now = time.time()
        for trial_id in list(self._wanted):
            tr = self._trials.get(trial_id)
            if tr is None or not tr.started:
                continue   # asked for before its start reached the writer: kept for it
            self._wanted.discard(trial_id)
            self._promote(tr)
        defer = max(window, DEFER_S)
        for tr in list(self._deferred.values()):
            if closing or now - tr.deferred[0] >= defer:
                self._promote(tr)
        if self._whole and (closing or not self._ops.in_flight(BULK)):
            self._write_whole(everything=closing)
        for tr in list(self._unflushed.values()):
            oldest = min((x for x in (tr.oldest_result_at(),
                                      tr.logs.oldest_at() if tr.started or tr.attached else None)
                          if x is not None), default=None)
            if oldest is not None and not self._ops.in_flight(tr.trial_id) and (
                    closing or now - oldest >= window):
                self._flush(tr)
            if not tr.buffer and not len(tr.logs):
                del self._unflushed[tr.trial_id]
        oldest = self._logs.oldest_at()
        if oldest is not None and not self._ops.in_flight(EXPERIMENT_LOGS) and (
                closing or now - oldest >= window):
            self._flush_experiment_logs()
        if not self._finishing:
            self._publish_due(now)

    def _publish_due(self, now: float) -> None:
        """Schedule the artifact writes the book says are due (see ``_artifact_book``)."""
        for trial_id in self._book.trials_due(now):
            self._schedule_trial_artifacts(self._trials[trial_id])
        if self._ops.in_flight(ARTIFACTS) or (
                self._created is not None and self._created.done()
                and self.experiment_flow_run_id is None):  # no run to write them to
            return
        caught_up = self._ops.outstanding() <= CAUGHT_UP_OPS
        for kind in self._book.due(now, caught_up):
            self._ops.schedule(ARTIFACTS, f"{kind.value} artifact", self._rewrite(kind),
                               after=[self._created])

    def _promote(self, tr: TrialRun) -> None:
        """Write a deferred trial's start now: it goes on through the REST writes."""
        if tr.deferred is None:
            return
        t, change = tr.deferred
        tr.deferred = None
        self._deferred.pop(tr.trial_id, None)
        self._change(tr, t, change)

    def _write_whole(self, everything: bool) -> None:
        """Schedule the trials that ended while deferred, a batch per write (one batch, or
        all of them with ``everything``)."""
        while self._whole:
            batch, self._whole = self._whole[:BULK_BATCH], self._whole[BULK_BATCH:]
            task = self._ops.schedule(BULK, f"{len(batch)} whole trial runs",
                                      self._create_whole(batch), after=[self._created])
            for tr in batch:
                tr.written = task
            if not everything:
                return

    def _flush(self, tr: TrialRun) -> None:
        if tr.deferred is not None or tr.ended is not None:
            return  # its results and lines wait for its start, or go with it whole
        batch = tr.take_batch()
        if batch is not None:
            self._schedule(tr, batch.describe, self._create_iterations(tr, batch, tr.flow_run_id))
        if not (tr.started or tr.attached):
            return  # its lines wait for its flow run
        for lines in tr.logs.take():
            self._schedule(tr, f"{len(lines)} log lines",
                           self._write_logs(lines, tr.flow_run_id, tr))

    def _flush_experiment_logs(self) -> None:
        for lines in self._logs.take():
            self._ops.schedule(EXPERIMENT_LOGS, f"{len(lines)} log lines",
                               self._write_logs(lines, None, None), after=[self._created])

    # ------------------------------------------------------------------ bookkeeping
    def idle(self) -> bool:
        return (self._ops.idle() and not self._logs and not self._whole
                and not self._deferred) and not any(
            tr.buffer or (len(tr.logs) and (tr.started or tr.attached))
            for tr in self._unflushed.values())

    @property
    def finishing(self) -> bool:
        return self._finishing

    def outstanding(self) -> int:
        """Writes scheduled and not acknowledged yet."""
        return self._ops.outstanding()

    def cancel(self) -> None:
        self._ops.cancel()

    def abandon(self) -> None:
        """The server is gone (or the recorder gives up): cancel every outstanding write and
        drop the buffers, keeping the count of what they held for ``unrecorded_counts``."""
        counts, self._abandoned_detail = self.unrecorded_counts()
        self._failed = counts
        self._ops.cancel()
        for tr in self._trials.values():
            tr.buffer = []
            tr.logs = LogBuffer()
        self._logs = LogBuffer()

    def live_trial_runs(self) -> Dict[str, str]:
        """trial id -> flow run id of the trials whose own run exists and has not ended."""
        return {tr.trial_id: tr.flow_run_id for tr in self._trials.values()
                if tr.live and tr.flow_run_id is not None}

    def unrecorded_counts(self) -> Tuple[Counter, List[str]]:
        """What is not recorded, by category (``trial runs``, ``iteration task runs``,
        ``states``, ``artifacts``, ``log lines``, ...), writes lost to a dead server
        included; and per trial, in words."""
        counts = Counter(self._failed)
        if self._abandoned_detail:
            return counts, list(self._abandoned_detail)
        for lane in _EXPERIMENT_LANES:
            for desc in self._ops.pending(lane):
                counts.update(_categories(desc))
        if len(self._logs):
            counts["log lines"] += len(self._logs)
        if self._deferred or self._whole:
            counts["trial runs"] += len(self._deferred) + len(self._whole)
        detail = []
        for tr in self._trials.values():
            pending = self._ops.pending(tr.trial_id)
            for desc in pending:
                counts.update(_categories(desc))
            if tr.buffer:
                counts["results"] += len(tr.buffer)
            if len(tr.logs):
                counts["log lines"] += len(tr.logs)
            buffered = tr.buffered_description()
            parts = pending + ([buffered] if buffered else [])
            if parts:
                detail.append(f"trial {tr.name}: " + "; ".join(parts))
        return counts, detail

    def unrecorded(self) -> List[str]:
        """What is scheduled or buffered and not written yet, per run."""
        out = [f"experiment: {desc}" for lane in _EXPERIMENT_LANES
               for desc in self._ops.pending(lane)]
        for tr in self._trials.values():
            parts = self._ops.pending(tr.trial_id)
            buffered = tr.buffered_description()
            if buffered:
                parts.append(buffered)
            if parts:
                out.append(f"trial {tr.name}: " + "; ".join(parts))
        return out

    def _trial(self, trial_id: str, name: Optional[str] = None) -> TrialRun:
        tr = self._trials.get(trial_id)
        if tr is None:
            tr = self._trials[trial_id] = TrialRun(trial_id, name or trial_id)
        return tr

    def _change(self, tr: TrialRun, t: float, change: Optional[StateChange]) -> None:
        if change is None:
            return
        coro = (self._create_trial(tr, change, t) if change.create
                else self._set_state(tr, change, t))
        self._schedule(tr, change.describe, coro)

    def _schedule(self, tr: TrialRun, desc: str, coro) -> None:
        self._ops.schedule(tr.trial_id, desc, coro, after=[self._created, tr.written])

    def _on_error(self, lane: Hashable, desc: str, exc: Exception) -> None:
        self._stats["writes_failed"] += 1
        if self.gone is None and is_connection_error(exc):
            self.gone = f"{type(exc).__name__}: {exc}"
        if self.gone is not None:  # counted, said once by the recorder
            self._failed.update(_categories(desc))
            return
        who = ("experiment" if lane in _EXPERIMENT_LANES
               else f"trial {self._trials[lane].name}")
        if len(self._errors) < MAX_ERRORS:
            self._errors.append(f"{who}: {desc} not recorded: {type(exc).__name__}: {exc}")
        log.warning("Prefect recording of %s: %s failed: %s", who, desc, exc)

    def _lag_note(self, t: float) -> str:
        lag = time.time() - t
        if lag > self._stats["max_lag_s"]:
            self._stats["max_lag_s"] = round(lag, 3)
        return f" (at {hms(t)}, recorded {lag:.1f} s later)" if lag > 1.0 else ""

    # ------------------------------------------------------------------ the writes
    async def _create_experiment(self, parameters: dict, t: float) -> None:
        state = StateSpec(StateKind.RUNNING, None, "experiment started").with_note(
            self._lag_note(t))
        if self._caller is not None:
            self.parent_task_run_id = await self._create_subflow_task_run(self._caller)
        self.experiment_flow_run_id = await self._writes.create_flow_run(
            self._flow_names["experiment"], self._name, parameters, self._tags, state,
            idempotency_key=f"tunelib-experiment-{uuid.uuid4().hex}",
            parent_task_run_id=self.parent_task_run_id)

    async def _create_subflow_task_run(self, caller: CallerRun) -> str:
        """The task run in the caller's flow run standing for the experiment's (a subflow),
        as Prefect's flow engine creates it (``Task.create_run`` for a subflow: Pending,
        a unique dynamic key, ``__parents__`` = the task run fit() was called in)."""
        from prefect.client.schemas.objects import TaskRunResult

        inputs = ({"__parents__": [TaskRunResult(id=uuid.UUID(caller.task_run_id))]}
                  if caller.task_run_id else {})
        key = uuid.uuid4().hex
        return await self._writes.create_task_run(
            self._experiment_task, caller.flow_run_id, dynamic_key=key,
            name=self._name or self._flow_names["experiment"], tags=self._tags,
            state=StateSpec(StateKind.PENDING), task_run_id=str(uuid.uuid4()),
            task_inputs=inputs)

    async def _create_trial(self, tr: TrialRun, change: StateChange, t: float) -> None:
        exp_id = self.experiment_flow_run_id
        tags = list(dict.fromkeys([*([self._name] if self._name else []), tr.trial_id]))
        if exp_id is not None:
            tr.parent_task_run_id = await self._writes.create_task_run(
                self._subflow_task, exp_id, dynamic_key=tr.trial_id, name=tr.name, tags=tags,
                state=StateSpec(StateKind.PENDING), task_run_id=str(uuid.uuid4()))
        tr.flow_run_id = await self._writes.create_flow_run(
            self._flow_names["trial"], tr.name, {"config": tr.config}, tags,
            change.state.with_note(self._lag_note(t)),
            idempotency_key=f"tunelib-trial-{exp_id}-{tr.trial_id}-{uuid.uuid4().hex[:8]}",
            parent_task_run_id=tr.parent_task_run_id, retries=tr.retries)

    async def _create_whole(self, trials: List[TrialRun]) -> None:
        """Write ``trials`` (each ended while deferred) whole, in one request; through the
        REST writes instead when the server has no such route."""
        exp_id = self.experiment_flow_run_id
        if exp_id is None:
            raise RuntimeError("the experiment's flow run was not created")
        flow_id = str(await self._writes.flow_id(self._flow_names["trial"]))
        records, seen = [], []
        try:
            for tr in trials:
                records.append(await self._whole_record(tr, exp_id, flow_id))
                seen.append(self._book.trials[tr.trial_id].results.seen)
            await self._writes.create_trials(records)
        except Exception as exc:
            if (len(records) == len(trials) and getattr(getattr(
                    exc, "response", None), "status_code", None) in (404, 405)):
                self._writes.bulk = False   # not tunelib's server after all: REST from now on
                for tr, record in zip(trials, records):
                    self._replay(tr, record)
                return
            for tr in trials:   # lost (reported by the caller): nothing of theirs waits
                tr.ended, tr.buffer, tr.logs = None, [], LogBuffer()
                self._book.trial_written(tr.trial_id, self._book.trials[tr.trial_id].results.seen)
            raise
        self._stats["whole_trials"] = self._stats.get("whole_trials", 0) + len(trials)
        for tr, record, n in zip(trials, records, seen):
            tr.flow_run_id = record["flow_run"]["id"]
            tr.parent_task_run_id = (record["parent_task_run"] or {}).get("id")
            tr.ended = None
            self._book.trial_written(tr.trial_id, n)

    async def _whole_record(self, tr: TrialRun, exp_id: str, flow_id: str) -> Dict[str, Any]:
        """``_bulk_app``'s record of a trial that ended while deferred (its buffered results
        and lines taken)."""
        (t0, start), (t1, end) = tr.deferred_start, tr.ended
        tags = list(dict.fromkeys([*([self._name] if self._name else []), tr.trial_id]))
        run_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
        states = [_state(start.state, t0), _state(end.state, max(t1, t0))]
        batch = tr.take_batch()
        task_runs = []
        if batch is not None:
            task_runs.append({
                "id": str(uuid.uuid4()), "task_key": self._iteration_task.task_key,
                "dynamic_key": f"{batch.first}-{batch.last}-{batch.seq}",
                "name": task_run_name(batch.first, batch.last), "tags": tags,
                "start": _iso(batch.results[0][0]), "end": _iso(batch.results[-1][0]),
                "message": iterations_message(batch.results)})
            tr.recorded(batch)
        logs = [line for lines in tr.logs.take() for line in log_bodies(lines, run_id)]
        artifacts = []
        if self._book.claim_trial_write(tr.trial_id):
            artifacts = [{"key": b.key, "type": b.kind.value, "description": b.description,
                          "data": b.data}
                         for b in await self._artifacts.trial_bodies(tr.trial_id)]
        return {
            "flow_run": {
                "id": run_id, "flow_id": flow_id, "name": tr.name,
                "parameters": {"config": tr.config}, "tags": tags, "retries": tr.retries,
                "idempotency_key": f"tunelib-trial-{exp_id}-{tr.trial_id}-{run_id[:8]}",
                "parent_task_run_id": parent_id, "states": states},
            "parent_task_run": {
                "id": parent_id, "flow_run_id": exp_id, "task_key": self._subflow_task.task_key,
                "dynamic_key": tr.trial_id, "name": tr.name, "tags": tags},
            "task_runs": task_runs, "logs": logs, "artifacts": artifacts}

    def _replay(self, tr: TrialRun, record: Dict[str, Any]) -> None:
        """Write a whole trial through the REST writes (the server has no bulk route)."""
        (t0, start), (t1, end) = tr.deferred_start, tr.ended
        tr.ended, tr.written = None, None
        self._change(tr, t0, start)
        for task_run in record["task_runs"]:
            self._schedule(tr, f"iteration task run {task_run['name']}",
                           self._replay_task_run(tr, task_run))
        if record["logs"]:
            self._schedule(tr, f"{len(record['logs'])} log lines",
                           self._replay_logs(tr, record["logs"]))
        self._change(tr, t1, end)
        if record["artifacts"]:
            self._schedule_trial_artifacts(tr)

    async def _replay_task_run(self, tr: TrialRun, task_run: Dict[str, Any]) -> None:
        from datetime import datetime

        await self._writes.emit_task_run(
            self._iteration_task, tr.flow_run_id, task_run["id"], name=task_run["name"],
            dynamic_key=task_run["dynamic_key"], tags=task_run["tags"],
            start_t=datetime.fromisoformat(task_run["start"]).timestamp(),
            end_t=datetime.fromisoformat(task_run["end"]).timestamp(),
            message=task_run["message"])

    async def _replay_logs(self, tr: TrialRun, bodies: List[Dict[str, Any]]) -> None:
        await self._writes.create_logs([dict(b, flow_run_id=tr.flow_run_id) for b in bodies])

    async def _create_iterations(self, tr: TrialRun, batch: Batch,
                                 flow_run_id: Optional[str]) -> None:
        # the run the results belong to: known when they were flushed (an attached trial's
        # current run), else the trial's own run, created by an earlier write of this lane
        flow_run_id = flow_run_id or tr.flow_run_id
        if flow_run_id is None:
            raise RuntimeError("the trial's flow run was not created")
        # sent as events: the task run spans its first to its last result's time
        await self._writes.emit_task_run(
            self._iteration_task, flow_run_id, str(uuid.uuid4()),
            name=task_run_name(batch.first, batch.last),
            dynamic_key=f"{batch.first}-{batch.last}-{batch.seq}",
            tags=[x for x in (self._name, tr.trial_id) if x],
            start_t=batch.results[0][0], end_t=batch.results[-1][0],
            message=iterations_message(batch.results))
        tr.recorded(batch)

    async def _write_logs(self, lines: List[LogLine], flow_run_id: Optional[str],
                          tr: Optional[TrialRun]) -> None:
        # as for results: the run known when flushed (an attached trial's), else the trial's
        # own run (or the experiment's) created by an earlier write
        run = flow_run_id or (tr.flow_run_id if tr is not None else self.experiment_flow_run_id)
        if run is None:
            raise RuntimeError("the flow run of these lines was not created")
        await self._writes.create_logs(log_bodies(lines, run))

    def _schedule_trial_artifacts(self, tr: TrialRun) -> None:
        self._schedule(tr, "metric table artifact", self._write_trial_artifacts(tr))

    async def _write_trial_artifacts(self, tr: TrialRun) -> None:
        if tr.flow_run_id is None:
            raise RuntimeError("the trial's flow run was not created")
        await self._artifacts.write_trial(tr.trial_id, tr.flow_run_id)

    async def _rewrite(self, kind: Rewritten) -> None:
        if self.experiment_flow_run_id is None:
            raise RuntimeError("the experiment's flow run was not created")
        await self._artifacts.rewrite(kind, self.experiment_flow_run_id)

    async def _set_state(self, tr: TrialRun, change: StateChange, t: float) -> None:
        if tr.flow_run_id is None:
            raise RuntimeError("the trial's flow run was not created")
        await self._writes.set_state(tr.flow_run_id, change, self._lag_note(t))

    async def _finish_experiment(self, outcome: ExperimentOutcome, rows: list, t: float) -> None:
        # trials that were not finished explicitly still have to wait for their writes
        busy = [task for task in self._ops.tails(exclude=[EXPERIMENT]) if not task.done()]
        if busy:
            await asyncio.wait(busy)
        exp_id = self.experiment_flow_run_id
        if exp_id is None:
            raise RuntimeError("the experiment's flow run was not created")
        await self._artifacts.finish(
            exp_id, lambda desc, exc: self._on_error(EXPERIMENT, desc, exc))
        kind = {ExperimentOutcome.COMPLETED: StateKind.COMPLETED,
                ExperimentOutcome.CANCELLED: StateKind.CANCELLED}.get(outcome, StateKind.FAILED)
        state = StateSpec(kind, None, f"{len(rows)} trials: {summary_text(rows)}")
        await self._writes.set_state(exp_id, StateChange(state, "final experiment state",
                                                         force=True), self._lag_note(t))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _state(spec: StateSpec, t: float) -> Dict[str, Any]:
    """A state of ``_bulk_app``'s records: ``spec`` at ``t`` (epoch seconds)."""
    from tunelib.prefect._payloads import prefect_state

    state = prefect_state(spec)
    return {"type": state.type.value, "name": state.name, "timestamp": _iso(t),
            "message": state.message}


def _categories(desc: str) -> Counter:
    """What an operation (its description) records, counted by category."""
    if desc.endswith("whole trial runs"):
        return Counter({"trial runs": int(desc.split()[0])})
    if desc.endswith("log lines"):
        return Counter({"log lines": int(desc.split()[0])})
    if desc.endswith("flow run"):
        return Counter({"experiment runs" if desc.startswith("experiment") else "trial runs": 1})
    if " results (iterations " in desc:
        return Counter({"iteration task runs": 1, "results": int(desc.split()[0])})
    if "artifact" in desc:
        return Counter({"artifacts": 1} if "state" not in desc
                       else {"artifacts": 1, "states": 1})
    if "state" in desc:
        return Counter({"states": 1})
    return Counter({"other writes": 1})
