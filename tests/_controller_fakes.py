"""A fake executor and a fake recorder, for testing the experiment controller in milliseconds.

``FakeExecutor`` implements the executor protocol (``tunelib.executor.base.Executor``) over
*scripted* trials, synchronously: no worker process, no Prefect. A script is a function of
a trial's config that returns its steps, one timeline across all of the trial's attempts:

- a dict: the attempt reports it as a result (``training_iteration`` is filled in, counting
  on from ``TrialSpec.start_iteration``) and waits for the controller's decision;
- ``checkpointed(**metrics)``: the same, reported together with a new checkpoint;
- an exception instance: the attempt raises it (an ``error`` event). A retry or a resume
  carries on with the step after it;
- the end of the steps: the trainable returns (a ``done`` event). An endless iterable
  (``itertools.repeat({"loss": 1.0})``) never returns.

After a STOP the trial's next event is ``done``; after a PAUSE it is ``paused``, with a
checkpoint saved at the paused result, as a class Trainable does. Every ``start_trial``
spec and every ``decide`` is kept, so tests assert on attempts and decisions.

``FakeRecorder`` implements ``tunelib.recording.Recorder`` by keeping every call.

Example::

    controller, executor, recorder = run_controller(
        {"a": [{"loss": 1.0}, ValueError("boom"), {"loss": 0.5}]}, tmp_path, max_failures=1)
    assert recorder.finished_status(trial_named(controller, "a").trial_id) == "TERMINATED"
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Union

import pyarrow.fs as pafs

from tunelib._layout import checkpoint_dir_name
from tunelib.config import CheckpointConfig
from tunelib.controller import Controller, ExperimentSpec
from tunelib.executor.base import CheckpointRecord, EventKind, TrialEvent, TrialSpec
from tunelib.schedulers import FIFOScheduler
from tunelib.schedulers.trial_scheduler import TrialScheduler
from tunelib.search import as_search_algorithm, grid_search
from tunelib.stopper import as_stopper
from tunelib.trial import Trial


@dataclass
class Checkpointed:
    """A step: report ``result`` together with a new checkpoint."""

    result: Dict[str, Any]


Step = Union[Dict[str, Any], Checkpointed, BaseException]
Script = Callable[[Dict[str, Any]], Iterable[Step]]


def checkpointed(**metrics: Any) -> Checkpointed:
    """A step reporting ``metrics`` with a checkpoint, e.g. ``checkpointed(loss=0.5)``."""
    return Checkpointed(dict(metrics))


def event(kind: str, trial_id: str, **fields: Any) -> TrialEvent:
    """Every TrialEvent of the fakes is built here: the one place to adapt when the event
    type changes (e.g. ``event("result", "t1", result={"loss": 1.0})``)."""
    return TrialEvent(EventKind(kind), trial_id, **fields)


# --------------------------------------------------------------------------- executor


@dataclass
class DecisionSent:
    """One ``decide`` call the executor received."""

    trial_id: str
    decision: str


@dataclass
class _Attempt:
    """A running attempt: where it is in its trial's timeline and what it waits for."""

    spec: TrialSpec
    iteration: int
    next_checkpoint_index: int
    kept: List[str]  # the trial's checkpoints on storage, oldest first (all are kept)
    awaiting_decision: bool = False
    ending: Optional[str] = None  # STOP or PAUSE, answered to the latest result


_END = object()


class FakeExecutor:
    """The executor protocol over scripted trials (see the module docstring).

    ``max_polls`` turns a controller that never ends (a bug under test) into a failure
    instead of a hung test run.

    Example::

        executor = FakeExecutor(lambda config: [{"loss": 1.0}, {"loss": 0.5}], capacity=2)
    """

    def __init__(self, script: Script, capacity: int = 4, max_polls: int = 200_000):
        self.script = script
        self._capacity = capacity
        self.max_polls = max_polls
        self.started: List[TrialSpec] = []
        self.decisions: List[DecisionSent] = []
        self.killed: List[str] = []
        self.trainables: Dict[str, bytes] = {}
        self.polls = 0
        self.is_started = False
        self.is_shut_down = False
        self._timelines: Dict[str, Iterator[Step]] = {}
        self._running: Dict[str, _Attempt] = {}

    # ------------------------------------------------------------------ the protocol
    def start(self) -> None:
        self.is_started = True

    @property
    def capacity(self) -> int:
        return self._capacity

    def has_free_slot(self) -> bool:
        return len(self._running) < self._capacity

    def register_trainable(self, key: str, payload: bytes) -> None:
        self.trainables[key] = payload

    def start_trial(self, spec: TrialSpec) -> None:
        if spec.trial_id in self._running:
            raise AssertionError(f"start_trial({spec.trial_id!r}) while it is still running")
        if not self.has_free_slot():
            raise AssertionError(f"start_trial({spec.trial_id!r}) with all "
                                 f"{self._capacity} slots busy")
        self.started.append(spec)
        if spec.trial_id not in self._timelines:
            self._timelines[spec.trial_id] = iter(self.script(spec.config))
        kept = [k if isinstance(k, str) else k[0] for k in spec.kept_checkpoints]
        self._running[spec.trial_id] = _Attempt(spec, spec.start_iteration,
                                                spec.next_checkpoint_index, kept)

    def decide(self, trial_id: str, decision: str) -> None:
        self.decisions.append(DecisionSent(trial_id, decision))
        attempt = self._running.get(trial_id)
        if attempt is None:  # killed meanwhile: real executors drop the answer too
            return
        if not attempt.awaiting_decision:
            raise AssertionError(f"decide({trial_id!r}, {decision!r}) without a pending result")
        attempt.awaiting_decision = False
        if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE):
            attempt.ending = decision

    def poll(self, timeout: float) -> List[TrialEvent]:
        """The next event of every running trial that is not waiting for a decision; never
        waits (the scripted trials are always ready)."""
        self.polls += 1
        if self.polls > self.max_polls:
            raise AssertionError(f"the controller polled {self.max_polls} times without "
                                 "ending the experiment")
        return [self._advance(trial_id, attempt)
                for trial_id, attempt in list(self._running.items())
                if not attempt.awaiting_decision]

    def kill_trial(self, trial_id: str) -> None:
        self.killed.append(trial_id)
        self._running.pop(trial_id, None)

    def shutdown(self) -> None:
        self.is_shut_down = True

    # ------------------------------------------------------------------ what tests read
    def starts_of(self, trial_id: str) -> List[TrialSpec]:
        """The specs of ``trial_id``'s attempts, first attempt first."""
        return [spec for spec in self.started if spec.trial_id == trial_id]

    def decisions_for(self, trial_id: str) -> List[str]:
        """The decisions answered to ``trial_id``'s results, in order."""
        return [d.decision for d in self.decisions if d.trial_id == trial_id]

    # ------------------------------------------------------------------ stepping
    def _advance(self, trial_id: str, attempt: _Attempt) -> TrialEvent:
        if attempt.ending == TrialScheduler.STOP:
            del self._running[trial_id]
            return event("done", trial_id)
        if attempt.ending == TrialScheduler.PAUSE:
            del self._running[trial_id]
            return event("paused", trial_id, checkpoint=self._new_checkpoint(attempt))
        step = next(self._timelines[trial_id], _END)
        if step is _END:
            del self._running[trial_id]
            return event("done", trial_id)
        if isinstance(step, BaseException):
            del self._running[trial_id]
            text = "".join(traceback.format_exception(step))
            return event("error", trial_id, error_text=text, error=step)
        checkpoint = None
        if isinstance(step, Checkpointed):
            checkpoint = self._new_checkpoint(attempt)
            step = step.result
        attempt.iteration += 1
        attempt.awaiting_decision = True
        result = dict(step, training_iteration=attempt.iteration)
        return event("result", trial_id, result=result, checkpoint=checkpoint)

    @staticmethod
    def _new_checkpoint(attempt: _Attempt) -> CheckpointRecord:
        """A checkpoint persisted by the attempt, named as the trial writer names them."""
        name = checkpoint_dir_name(attempt.next_checkpoint_index)
        attempt.next_checkpoint_index += 1
        attempt.kept.append(name)
        return CheckpointRecord(name, tuple(attempt.kept), attempt.next_checkpoint_index)


# --------------------------------------------------------------------------- recorder


@dataclass
class Recorded:
    """One call the recorder received: the method's name and its arguments by name."""

    method: str
    args: Dict[str, Any] = field(default_factory=dict)


class FakeRecorder:
    """The Recorder protocol, keeping every call in ``calls``.

    Example::

        recorder.methods_for("t1")     # ["trial_started", "trial_result", "trial_finished"]
        recorder.finished_status("t1")  # "TERMINATED"
    """

    def __init__(self) -> None:
        self.calls: List[Recorded] = []
        self.stats: Dict[str, Any] = {"writes": 0, "retries_503": 0, "seconds_busy": 0.0}

    def _add(self, method: str, **args: Any) -> None:
        self.calls.append(Recorded(method, args))

    # ------------------------------------------------------------------ the protocol
    def experiment_started(self, name: str, parameters: dict, tags: List[str]) -> None:
        self._add("experiment_started", name=name, parameters=parameters, tags=list(tags))

    def trial_started(self, trial_id: str, trial_name: str, config: dict, max_failures: int,
                      attempt: int) -> None:
        self._add("trial_started", trial_id=trial_id, trial_name=trial_name, config=config,
                  max_failures=max_failures, attempt=attempt)

    def trial_result(self, trial_id: str, result: dict) -> None:
        self._add("trial_result", trial_id=trial_id, result=result)

    def trial_failed(self, trial_id: str, error: str, will_retry: bool) -> None:
        self._add("trial_failed", trial_id=trial_id, error=error, will_retry=will_retry)

    def trial_finished(self, trial_id: str, status: str, message: str = "") -> None:
        self._add("trial_finished", trial_id=trial_id, status=status, message=message)

    def trial_paused(self, trial_id: str) -> None:
        self._add("trial_paused", trial_id=trial_id)

    def trial_attached(self, trial_id: str, flow_run_id: str) -> None:
        self._add("trial_attached", trial_id=trial_id, flow_run_id=flow_run_id)

    def experiment_finished(self, status: str, summary_rows: List[dict]) -> None:
        self._add("experiment_finished", status=status, summary_rows=summary_rows)

    def trial_logs(self, trial_id: str, records: list) -> None:
        self._add("trial_logs", trial_id=trial_id, records=list(records))

    def experiment_log(self, level: int, message: str) -> None:
        self._add("experiment_log", level=level, message=message)

    def watch_cancel(self, callback) -> None:
        self.cancel_callback = callback

    def run_context(self, trial_id=None):
        return None

    def close(self, timeout: float) -> List[str]:
        return []

    # ------------------------------------------------------------------ what tests read
    def called(self, method: str) -> List[Recorded]:
        """The calls of ``method``, in order."""
        return [c for c in self.calls if c.method == method]

    def of_trial(self, trial_id: str) -> List[Recorded]:
        """The calls about ``trial_id``, in order."""
        return [c for c in self.calls if c.args.get("trial_id") == trial_id]

    def methods_for(self, trial_id: str) -> List[str]:
        """The names of the calls about ``trial_id``, in order."""
        return [c.method for c in self.of_trial(trial_id)]

    def finished(self, trial_id: str) -> Recorded:
        """The one ``trial_finished`` call of ``trial_id`` (fails unless exactly one)."""
        calls = [c for c in self.of_trial(trial_id) if c.method == "trial_finished"]
        if len(calls) != 1:
            raise AssertionError(f"expected one trial_finished for {trial_id!r}, got {calls}")
        return calls[0]

    def finished_status(self, trial_id: str) -> str:
        """The status ``trial_id`` was recorded as finishing with."""
        return self.finished(trial_id).args["status"]

    def will_retry(self, trial_id: str) -> List[bool]:
        """``will_retry`` of each ``trial_failed`` call of ``trial_id``."""
        return [c.args["will_retry"] for c in self.of_trial(trial_id)
                if c.method == "trial_failed"]


# --------------------------------------------------------------------------- set-up


def make_spec(storage: Path, **fields: Any) -> ExperimentSpec:
    """An ExperimentSpec on the local filesystem under ``storage`` (a pytest ``tmp_path``),
    silent (``verbose=0``); ``fields`` override any of its fields."""
    path = str(Path(storage) / "exp")
    values: Dict[str, Any] = dict(
        name="exp",
        trainable_name="fake",
        trainable_key="fake",
        experiment_path=path,
        experiment_uri=path,
        fs=pafs.LocalFileSystem(),
        storage_filesystem=None,
        param_space={},
        num_samples=1,
        metric=None,
        mode=None,
        checkpoint_config=CheckpointConfig(),
        max_failures=0,
        fail_fast=False,
        time_budget_s=None,
        max_concurrent=4,
        resources={"cpu": 1.0},
        verbose=0,
    )
    values.update(fields)
    return ExperimentSpec(**values)


def make_controller(
    trials: Union[Script, Mapping[str, Iterable[Step]]],
    storage: Path,
    *,
    param_space: Optional[Dict[str, Any]] = None,
    num_samples: int = 1,
    scheduler: Optional[TrialScheduler] = None,
    stopper: Any = None,
    callbacks: Optional[List[Any]] = None,
    capacity: int = 4,
    **spec_fields: Any,
):
    """A Controller over a FakeExecutor and a FakeRecorder, set up as ``run_experiment``
    does it; returns ``(controller, executor, recorder)``, not yet run.

    ``trials`` is a script (with ``param_space`` / ``num_samples`` making the trials), or
    ``{name: steps}``: one trial per name, in that order, with config ``{"name": name}``.
    ``stopper`` takes any form of Ray's ``stop=``; ``spec_fields`` go to the
    ExperimentSpec (``metric``, ``max_failures``, ``fail_fast``, ``time_budget_s``...).
    """
    if isinstance(trials, Mapping):
        steps_by_name = dict(trials)
        param_space = {"name": grid_search(list(steps_by_name))}

        def script(config: Dict[str, Any]) -> Iterable[Step]:
            return steps_by_name[config["name"]]
    else:
        script = trials
    param_space = dict(param_space or {})
    metric, mode = spec_fields.get("metric"), spec_fields.get("mode")
    search_alg = as_search_algorithm(None, None)
    search_alg.set_search_properties(metric, mode, param_space)
    search_alg.add_configurations(param_space, num_samples)
    scheduler = scheduler or FIFOScheduler()
    scheduler.set_search_properties(metric, mode)
    spec_fields.setdefault("max_concurrent", capacity)
    spec = make_spec(storage, param_space=param_space, num_samples=num_samples, **spec_fields)
    executor = FakeExecutor(script, capacity=capacity)
    recorder = FakeRecorder()
    controller = Controller(spec, executor, recorder, search_alg, scheduler,
                            as_stopper(stopper), callbacks=callbacks)
    return controller, executor, recorder


def run_controller(trials: Union[Script, Mapping[str, Iterable[Step]]], storage: Path,
                   **kwargs: Any):
    """:func:`make_controller`, then start the executor, run the experiment and shut the
    executor down, as ``run_experiment`` does; returns ``(controller, executor, recorder)``.

    Example::

        controller, executor, recorder = run_controller({"a": [{"loss": 1.0}]}, tmp_path)
    """
    controller, executor, recorder = make_controller(trials, storage, **kwargs)
    executor.register_trainable(controller.spec.trainable_key, b"")
    executor.start()
    try:
        controller.run()
    finally:
        executor.shutdown()
    return controller, executor, recorder


def trial_named(controller: Controller, name: str) -> Trial:
    """The trial whose config is ``{"name": name}`` (see :func:`make_controller`)."""
    [trial] = [t for t in controller.trials if t.config.get("name") == name]
    return trial
