"""The experiment loop: trials move PENDING → RUNNING → (PAUSED) → TERMINATED | ERROR.

The controller asks the search algorithm for configs while workers are free, hands trials
to the executor, and answers every reported result with the decision of the stopper and
the scheduler. It never touches Prefect: what happens is told to a ``Recorder`` (cheap,
queued calls), which is the only thing that writes to Prefect.

The experiment state (``experiment_state-*.json`` and the search algorithm's state) is
saved when the experiment starts, before a trial created since the last save starts (so a
resumed experiment knows every trial that wrote a file), after a failure, every few
seconds, and at the end. ``request_stop`` (a stop signal, a cancel) ends the experiment
with its unfinished trials saved as they are, to be resumed from their latest checkpoints.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from tunelib import _layout
from tunelib import trial as T
from tunelib._callbacks import CallbackList
from tunelib._finished_entries import FinishedEntries
from tunelib._layout import ERROR_FILE, ERROR_PKL, PARAMS_FILE, flatten_dict, to_json_value
from tunelib._lifecycle import (
    Decision,
    ExperimentOutcome,
    StoppedBy,
    TrialOutcome,
    TrialStatus,
)
from tunelib._status_table import status_counts
from tunelib.error import TuneError
from tunelib.executor.base import (
    CheckpointRecord,
    EventKind,
    TrialEvent,
    TrialRunCancelled,
    TrialSpec,
)

if TYPE_CHECKING:  # the collaborators' protocols and bases (no import cost at run time)
    from tunelib.executor.base import Executor
    from tunelib.recording import Recorder
    from tunelib.schedulers.trial_scheduler import TrialScheduler
    from tunelib.search.search_algorithm import SearchAlgorithm
    from tunelib.stopper import Stopper

logger = logging.getLogger("tunelib")

_STATE_SAVE_PERIOD_S = 5.0
# a state save this fast is always made before a new trial starts (see _may_save_now)
_CHEAP_SAVE_S = 0.005
_BIG_STATE_TRIALS = 1000
# why a trial or the experiment stops when its Prefect flow run is cancelled
CANCELLED_REASON = "its Prefect flow run was cancelled"


@dataclass
class ExperimentSpec:
    """An experiment, normalised from Tuner / tune.run arguments."""

    name: str
    trainable_name: str
    trainable_key: str
    experiment_path: str          # on ``fs``
    experiment_uri: str           # what users see (a path or URL)
    fs: Any
    storage_filesystem: Any
    param_space: Dict[str, Any]
    num_samples: int
    metric: Optional[str]
    mode: Optional[str]
    checkpoint_config: Any
    max_failures: int
    fail_fast: Any
    time_budget_s: Optional[float]
    max_concurrent: int
    resources: Dict[str, float]
    reuse_actors: bool = False
    trial_name_creator: Optional[Callable] = None
    trial_dirname_creator: Optional[Callable] = None
    verbose: int = 1
    session_str: str = field(default_factory=_layout.session_str)
    # (stdout file, stderr file) each trial writes in its working dir (RunConfig.log_to_file)
    log_to_file: Tuple[Optional[str], Optional[str]] = (None, None)
    export_formats: List[str] = field(default_factory=list)  # tune.run(export_formats)
    # tune.run(restore=...): the checkpoint dir every new trial starts from (Ray's)
    restore_path: Optional[str] = None


class Controller:
    """Runs one experiment to completion (see module docstring)."""

    def __init__(self, spec: ExperimentSpec, executor: Executor, recorder: Recorder,
                 search_alg: SearchAlgorithm, scheduler: TrialScheduler,
                 stopper: Optional[Stopper], callbacks: Optional[Sequence[Any]] = None,
                 restored_trials: Optional[List[T.Trial]] = None,
                 id_prefix: Optional[str] = None):
        self.spec = spec
        self.executor = executor
        self.recorder = recorder
        self.search_alg = search_alg
        self.scheduler = scheduler
        self.stopper = stopper
        # Ray's hooks, called in Ray's order (tunelib._callbacks); the reporter is one too
        self.callbacks = callbacks if isinstance(callbacks, CallbackList) \
            else CallbackList(callbacks or [], fail_fast=spec.fail_fast)
        self.trials: List[T.Trial] = []
        self._first_unfinished = 0   # see _unfinished
        self._by_id: Dict[str, T.Trial] = {}
        self._running: Dict[str, T.Trial] = {}
        self._id_prefix = uuid.uuid4().hex[:5]
        self._search_finished = False
        self._stop_all = False
        self._stop_reason = ""
        # why the experiment was interrupted (a stop signal, Prefect's Cancel): it ends with
        # its unfinished trials as they are, resumable
        self.interrupted: Optional[str] = None
        # trials whose Prefect run was cancelled (UI, CLI): set from the recorder's thread
        self._cancel_requests: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self._fatal: Optional[BaseException] = None
        self._last_state_save = 0.0
        self._last_save_cost = 0.0   # seconds the last state save took (see _may_save_now)
        self._start = time.time()
        self._iteration = 0
        # decisions a scheduler asked for on trials other than the one it was deciding on
        self._queued_decisions: Dict[str, Decision] = {}
        self._deciding: Optional[str] = None
        self._max_pending = _max_pending_trials(search_alg)
        self._numbered_ids = _numbers_its_trials(search_alg)
        # trials of an earlier run of this experiment (Tuner.restore / resume=True)
        self._restored = {trial.trial_id for trial in restored_trials or []}
        for trial in restored_trials or []:
            trial.set_storage(T.StorageContext(spec.fs, spec.experiment_path))
            self.trials.append(trial)
            self._by_id[trial.trial_id] = trial
        if id_prefix:
            self._id_prefix = id_prefix
        self._started_here: set = set()
        self._policy_entries_written = 0
        self._state_save_warned: set = set()
        # trials created since the state was last saved: saved before any of them starts
        self._unsaved: set = set()
        self._finished_states = FinishedEntries()  # see _trial_data

    # ------------------------------------------------------------------ SchedulerController
    def get_trials(self) -> List[T.Trial]:
        return self.trials

    def get_live_trials(self) -> List[T.Trial]:
        return [t for t in self._unfinished() if not t.is_finished()]

    def pause_trial(self, trial: T.Trial, should_checkpoint: bool = True) -> None:
        """Pause a trial. The one whose result is being decided pauses through the PAUSE the
        scheduler returns; another running trial is told at its next report."""
        if trial.trial_id in self._running:
            if trial.trial_id != self._deciding:
                self._queued_decisions[trial.trial_id] = Decision.PAUSE
        elif trial.status == TrialStatus.PENDING:
            trial.status = TrialStatus.PAUSED

    def stop_trial(self, trial: T.Trial) -> None:
        if trial.trial_id in self._running:
            if trial.trial_id != self._deciding:
                self._queued_decisions[trial.trial_id] = Decision.STOP
        elif not trial.is_finished():
            trial.stopped_by = StoppedBy.SCHEDULER
            self._finish(trial, TrialStatus.TERMINATED, removed=True)

    def exploit(self, trial: T.Trial, donor_trial: T.Trial, new_config: Dict[str, Any],
                new_tag: Optional[str] = None) -> bool:
        """PBT: ``trial`` continues from ``donor_trial``'s latest checkpoint with
        ``new_config``; False (nothing changed) when the donor has no checkpoint yet."""
        if not donor_trial.checkpoint_dir_name:
            return False
        trial.set_config(new_config)
        if new_tag:
            trial.set_experiment_tag(new_tag)
        trial.restore_from = (
            f"{self.spec.experiment_path}/{donor_trial.dirname}/{donor_trial.checkpoint_dir_name}",
            donor_trial.checkpoint_progress,
        )
        self.pause_trial(trial, should_checkpoint=False)
        return True

    def request_stop(self, reason: str) -> None:
        """End the experiment soon, resumably (a stop signal, a cancel): running trials
        are stopped where they are and saved unfinished, as Ray saves them on Ctrl-C.
        Only sets a flag: safe from a signal handler or another thread."""
        if self.interrupted is None:
            self.interrupted = reason

    def request_trial_stop(self, trial_id: str) -> None:
        """Stop one trial soon (its Prefect flow run was cancelled): it ends TERMINATED,
        recorded as cancelled. Safe from another thread."""
        self._cancel_requests.put(trial_id)

    def _take_cancel_requests(self) -> None:
        while not self._cancel_requests.empty():
            trial = self._by_id.get(self._cancel_requests.get())
            if trial is None or trial.is_finished():
                continue
            if self._running.pop(trial.trial_id, None) is not None:
                self.executor.kill_trial(trial.trial_id)
            self._end_cancelled(trial)

    def _end_cancelled(self, trial: T.Trial) -> None:
        """``trial``'s Prefect run was cancelled: it ends TERMINATED, recorded cancelled."""
        self._stopped(trial, StoppedBy.CANCEL, CANCELLED_REASON)
        self._finish(trial, TrialStatus.TERMINATED, removed=True)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        spec = self.spec
        self.callbacks.setup(num_samples=spec.num_samples, time_budget_s=spec.time_budget_s,
                             total_num_samples=self.search_alg.total_samples)
        for trial in self.trials:  # restored trials that will run again
            if trial.status == TrialStatus.PENDING:
                self.scheduler.on_trial_add(self, trial)
        self.recorder.experiment_started(
            spec.name, {"param_space": to_json_value(spec.param_space),
                        "num_samples": spec.num_samples,
                        "metric": spec.metric, "mode": spec.mode,
                        "total_trials": self.search_alg.total_samples,
                        "experiment_path": spec.experiment_uri}, [spec.name],
        )
        self.save_state()  # the experiment is resumable from its very start
        try:
            while self.interrupted is None:
                self.callbacks.on_step_begin(iteration=self._iteration, trials=self.trials)
                self._check_budget()
                if not self._cancel_requests.empty():
                    self._take_cancel_requests()
                self._launch_trials()
                if self._fatal is not None:
                    break
                if not self._running and not self._has_startable_trials():
                    if self._search_finished or self._stop_all:
                        break
                for event in self.executor.poll(0.2 if self._running else 0.01):
                    self._handle(event)
                    if self._fatal is not None:
                        break
                if self._fatal is not None:
                    break
                now = time.monotonic()
                if now - self._last_state_save > _STATE_SAVE_PERIOD_S:
                    self.save_state()
                self._iteration += 1  # Ray's loop step, the callbacks' `iteration`
                self.callbacks.on_step_end(iteration=self._iteration, trials=self.trials)
        except BaseException as exc:  # a second Ctrl-C, a bug: what ran stays resumable
            self.request_stop(type(exc).__name__)
            raise
        finally:
            self._end_running_trials()
            try:
                self.save_state(final=True)
            finally:
                self._finished_states.close()   # not needed once saved
                self._after_experiment()
        if self._fatal is not None:
            raise self._fatal

    def _end_running_trials(self) -> None:
        """The loop is over: stop the trials still running. An interrupted experiment
        keeps them RUNNING, resumable from their latest checkpoint (Ray's Ctrl-C);
        an experiment that raised marks them ERROR."""
        for trial_id in list(self._running):
            self.executor.kill_trial(trial_id)
            trial = self._by_id[trial_id]
            self._running.pop(trial_id, None)
            if trial.is_finished():
                continue
            if self._fatal is not None:
                self._finish(trial, TrialStatus.ERROR)
            elif self.interrupted is not None:
                self.recorder.trial_finished(
                    trial.trial_id, TrialOutcome.INTERRUPTED,
                    f"interrupted ({self.interrupted}); the trial resumes from its latest "
                    "checkpoint when the experiment is resumed")
            else:
                self._stopped(trial, StoppedBy.EXPERIMENT,
                              self._stop_reason or "the experiment ended")
                self._finish(trial, TrialStatus.TERMINATED)

    def _after_experiment(self) -> None:
        counts = status_counts(self.trials)
        rows = [
            {"trial": str(t), "status": t.status, "iterations": t.last_result.get(
                "training_iteration", 0), **_summary_metrics(t, self.spec.metric)}
            for t in self.trials
        ]
        failed = self._fatal is not None or counts.get(TrialStatus.ERROR)
        if failed:
            status = ExperimentOutcome.FAILED
        elif self.interrupted is not None:
            status = ExperimentOutcome.CANCELLED  # resumable, as a cancelled flow run
        else:
            status = ExperimentOutcome.COMPLETED
        self.recorder.experiment_finished(status, rows)
        self.callbacks.on_experiment_end(trials=self.trials)

    def _check_budget(self) -> None:
        if self._stop_all:
            return
        budget = self.spec.time_budget_s
        if budget is not None and time.time() - self._start >= budget:
            self._stop_everything(f"time budget of {budget:g} s reached")
        elif self.stopper is not None and self.stopper.stop_all():
            self._stop_everything("the stopper ended the experiment")

    def _stop_everything(self, reason: str) -> None:
        self._stop_all = True
        self._stop_reason = reason
        for trial_id in list(self._running):
            trial = self._by_id[trial_id]
            self.executor.kill_trial(trial_id)
            self._running.pop(trial_id, None)
            self._stopped(trial, StoppedBy.EXPERIMENT, reason)
            self._finish(trial, TrialStatus.TERMINATED)
        for trial in self.trials:
            if trial.status in (TrialStatus.PENDING, TrialStatus.PAUSED):
                self._stopped(trial, StoppedBy.EXPERIMENT, reason)
                self._finish(trial, TrialStatus.TERMINATED)

    # ------------------------------------------------------------------ launching
    def _has_startable_trials(self) -> bool:
        return any(t.status in (TrialStatus.PENDING, TrialStatus.PAUSED)
                   for t in self._unfinished())

    def _unfinished(self) -> List[T.Trial]:
        """The trials from the first unfinished one on (finished trials stay finished, so
        the scans of a long experiment skip its finished head: 10,000 trials would make
        every launch O(n) otherwise)."""
        trials, i = self.trials, self._first_unfinished
        while i < len(trials) and trials[i].is_finished():
            i += 1
        self._first_unfinished = i
        return trials[i:]

    def _fill_pending(self) -> None:
        """Create trials ahead of free workers, as Ray does, so that schedulers that look at
        the whole population (synchronous HyperBand) see it."""
        if self._search_finished or self._stop_all:
            return
        pending = sum(1 for t in self._unfinished() if t.status == TrialStatus.PENDING)
        # refilled in chunks once half is used: the state is saved before a new trial
        # starts, so one save covers a chunk instead of every launch (10,000 short trials)
        if pending and pending >= (self._max_pending + 1) // 2:
            return
        while pending < self._max_pending:
            if self._create_trial() is None:
                return
            pending += 1

    def _launch_trials(self) -> None:
        self._fill_pending()
        while (
            not self._stop_all
            and len(self._running) < self.spec.max_concurrent
            and self.executor.has_free_slot()
        ):
            if not any(t.status == TrialStatus.PENDING for t in self._unfinished()):
                self._fill_pending()
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                return
            if trial.trial_id in self._unsaved and self._may_save_now():
                # the state knows every trial before the trial writes a file: a resumed
                # experiment continues it in its dir instead of starting it over elsewhere
                self.save_state()
            self._start_attempt(trial)

    def _create_trial(self) -> Optional[T.Trial]:
        index = len(self.trials)
        # Ray's ids: the variant generator numbers its trials, a searcher's are 8 hex digits
        trial_id = (f"{self._id_prefix}_{index:05d}" if self._numbered_ids
                    else T.generate_trial_id())
        suggestion = self.search_alg.next_suggestion(trial_id)
        if suggestion is None:
            if self.search_alg.is_finished():
                self._search_finished = True
            return None
        spec = self.spec
        trial = T.Trial(
            trial_id=trial_id,
            config=suggestion.config,
            trainable_name=spec.trainable_name,
            experiment_tag=suggestion.experiment_tag,
            evaluated_params=suggestion.evaluated_params,
            resources=dict(spec.resources),
            index=index,
            restore_path=spec.restore_path,
        )
        trial.set_storage(T.StorageContext(spec.fs, spec.experiment_path))
        if spec.trial_name_creator is not None:
            trial.custom_trial_name = str(spec.trial_name_creator(trial))
        if spec.trial_dirname_creator is not None:
            trial.dirname = _layout.safe_dirname(str(spec.trial_dirname_creator(trial)))
        else:
            max_len = int(os.environ.get("TUNE_MAX_LEN_IDENTIFIER", "130"))
            trial.dirname = _layout.default_trial_dirname(str(trial), trial.experiment_tag,
                                                          max_len)
        self.trials.append(trial)
        self._by_id[trial_id] = trial
        self._unsaved.add(trial_id)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def _start_attempt(self, trial: T.Trial) -> None:
        spec = self.spec
        restore = None
        start_iteration, start_time_total = 0, 0.0
        exploit = trial.restore_from
        trial.restore_from = None
        if exploit is not None:
            restore, (start_iteration, start_time_total) = exploit
        elif trial.checkpoint_dir_name:
            restore = f"{spec.experiment_path}/{trial.dirname}/{trial.checkpoint_dir_name}"
            start_iteration, start_time_total = trial.checkpoint_progress
        elif trial.restore_path:  # tune.run(restore=...): counting starts afresh, as in Ray
            restore = trial.restore_path
        if restore is not None:
            trial.checkpoint_progress = (start_iteration, start_time_total)
        attempt = trial.attempts
        write_params = attempt == 0 or exploit is not None
        if trial.trial_id in self._restored and trial.trial_id not in self._started_here:
            # its params are written once (from the config as given, not as restored)
            write_params = self._take_over_trial_dir(trial) or exploit is not None
        trial.attempts += 1
        trial.status = TrialStatus.RUNNING
        trial.start_time = trial.start_time or time.time()
        trial.results_seen = 0
        self._running[trial.trial_id] = trial
        self.executor.start_trial(TrialSpec(
            trial_id=trial.trial_id,
            trial_name=str(trial),
            trial_dirname=trial.dirname,
            experiment_name=spec.name,
            experiment_uri=spec.experiment_uri,
            trial_path=f"{spec.experiment_path}/{trial.dirname}",
            trainable_key=spec.trainable_key,
            config=trial.config,
            resources=trial.resources,
            checkpoint_config=spec.checkpoint_config,
            restore_checkpoint=restore,
            start_iteration=start_iteration,
            start_time_total=start_time_total,
            next_checkpoint_index=trial.next_checkpoint_index,
            kept_checkpoints=list(trial.kept_checkpoints),
            failure_number=trial.num_failures,
            write_params=write_params,
            reuse_actor=spec.reuse_actors,
            storage_filesystem=spec.storage_filesystem,
            log_to_file=spec.log_to_file,
            export_formats=list(spec.export_formats),
        ))
        # attempts of an earlier run of the experiment were recorded by that run
        first_here = trial.trial_id not in self._started_here
        self._started_here.add(trial.trial_id)
        self.recorder.trial_started(trial.trial_id, str(trial), trial.config, spec.max_failures,
                                    0 if first_here else attempt)
        self.callbacks.on_trial_start(iteration=self._iteration, trials=self.trials, trial=trial)

    # ------------------------------------------------------------------ events
    def _handle(self, event: TrialEvent) -> None:
        trial = self._running.get(event.trial_id)
        if trial is None:  # ended meanwhile (fail_fast, time budget): its late events are void
            return
        kind = event.kind
        if kind is EventKind.RESULT:
            self._on_result(trial, event)
            return
        self._running.pop(trial.trial_id, None)
        if kind is EventKind.ERROR:
            self._on_error(trial, event)
            return
        if event.checkpoint is not None:
            self._note_checkpoint(trial, event.checkpoint, trial.last_result)
            self._checkpoint_callbacks(trial)
        if kind is EventKind.PAUSED:
            trial.status = TrialStatus.PAUSED
            self.recorder.trial_paused(trial.trial_id)
        elif isinstance(event.error, TrialRunCancelled):  # its run was cancelled (workers)
            self._end_cancelled(trial)
        else:  # DONE: the trainable returned, or unwound after a STOP
            self._finish(trial, TrialStatus.TERMINATED)

    def _on_result(self, trial: T.Trial, event: TrialEvent) -> None:
        result = event.result
        trial.results_seen += 1
        if trial.results_seen == 1:
            self._validate_metric(trial, result)
            if self._fatal is not None:
                self.executor.decide(trial.trial_id, Decision.STOP)
                return
        trial.update_last_result(dict(result))  # the driver's copy carries experiment_tag
        if event.checkpoint is not None:
            self._note_checkpoint(trial, event.checkpoint, result)
        # schedulers and searchers see flattened results ("a/b"), as in Ray
        flat = flatten_dict(result)
        decision = self._queued_decisions.pop(trial.trial_id, Decision.CONTINUE)
        if decision == Decision.STOP:
            self._stopped(trial, StoppedBy.SCHEDULER, "stopped early by the scheduler")
        elif decision == Decision.CONTINUE:
            try:
                if self.stopper is not None and self.stopper(trial.trial_id, result):
                    decision = Decision.STOP
                    self._stopped(trial, StoppedBy.STOPPER, "stopped by the stopper")
                else:
                    self._deciding = trial.trial_id
                    decision = self.scheduler.on_trial_result(self, trial, flat)
                    if decision == Decision.STOP:
                        self._stopped(trial, StoppedBy.SCHEDULER,
                                      "stopped early by the scheduler")
            except Exception as exc:  # a misconfigured stopper/scheduler: stop, and say why
                self._fatal = exc
                self.executor.decide(trial.trial_id, Decision.STOP)
                return
            finally:
                self._deciding = None
            if len(getattr(self.scheduler, "policy_log", ())) > self._policy_entries_written:
                self._write_policy_log()
        self.search_alg.on_trial_result(trial.trial_id, flat)
        self.recorder.trial_result(trial.trial_id, result)
        if decision == Decision.STOP:
            trial.last_result["done"] = True  # as in Ray: the trial's last result is done
        # the result as the trial keeps it (Ray lets callbacks change it in place)
        self.callbacks.on_trial_result(iteration=self._iteration, trials=self.trials,
                                       trial=trial, result=trial.last_result)
        if event.checkpoint is not None:
            self._checkpoint_callbacks(trial)
        if decision not in (Decision.CONTINUE, Decision.PAUSE, Decision.STOP):
            decision = Decision.CONTINUE  # NOOP and unknown answers keep the trial going
        self.executor.decide(trial.trial_id, Decision(decision))

    @staticmethod
    def _stopped(trial: T.Trial, who: StoppedBy, reason: str) -> None:
        """Remember who ended ``trial`` early (the first one to do so), for its record."""
        if trial.stopped_by is None:
            trial.stopped_by, trial.stop_reason = who, reason

    def _validate_metric(self, trial: T.Trial, result: Dict[str, Any]) -> None:
        metric = self.spec.metric
        if metric is None or metric in result or result.get("done"):
            return
        if metric in flatten_dict(result):
            return
        reported = sorted(k for k in result if k != "config")
        self._fatal = TuneError(
            f"Trial {trial} returned a result which did not include the metric {metric!r} "
            f"that TuneConfig(metric=...) / tune.run(metric=...) expects. "
            f"Reported keys: {reported}."
        )

    def _note_checkpoint(self, trial: T.Trial, record: CheckpointRecord,
                         result: Dict[str, Any]) -> None:
        """Take the trial writer's retention decision as it is (decided once, there)."""
        metrics = dict(trial.kept_checkpoints)
        metrics[record.name] = result
        trial.kept_checkpoints = [(name, metrics.get(name, {})) for name in record.kept]
        trial.checkpoint_dir_name = record.name
        trial.next_checkpoint_index = record.next_index
        trial.checkpoint_progress = (
            result.get("training_iteration", 0), result.get("time_total_s", 0.0)
        )

    def _on_error(self, trial: T.Trial, event: TrialEvent) -> None:
        trial.num_failures += 1
        max_failures = self.spec.max_failures
        will_retry = (max_failures < 0 or trial.num_failures <= max_failures) and not self._stop_all
        if event.error is None and event.error_text:
            self._write_error_file(trial, event.error_text)
        trial.error_msg = event.error_text
        trial.error_file = ERROR_FILE
        self.recorder.trial_failed(trial.trial_id, event.error_text or "", will_retry)
        if will_retry:
            logger.warning("Trial %s failed (failure %d); retrying from %s.", trial,
                           trial.num_failures, trial.checkpoint_dir_name or "the start")
            trial.status = TrialStatus.PENDING
            # saved now: a resumed run counts this failure, so its error.txt stays the
            # trial's (error files of a trial without failures are a dead driver's leftovers)
            self.save_state()
            self.callbacks.on_trial_recover(iteration=self._iteration, trials=self.trials,
                                            trial=trial)
            return
        self.scheduler.on_trial_error(self, trial)
        self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None, error=True)
        trial.status = TrialStatus.ERROR
        self.recorder.trial_finished(trial.trial_id, TrialOutcome.ERROR,
                                     _last_line(event.error_text))
        self.callbacks.on_trial_error(iteration=self._iteration, trials=self.trials, trial=trial)
        self._let_go(trial)
        if self.spec.fail_fast == "raise":
            self._fatal = event.error or TuneError(event.error_text)
        elif self.spec.fail_fast:
            self._stop_everything(f"trial {trial} failed and fail_fast is set")

    def _take_over_trial_dir(self, trial: T.Trial) -> bool:
        """A trial of an earlier run of this experiment runs again, in its dir. A driver
        killed mid-attempt can have left error files there (its worker's broken
        connection) for a trial that has no failure: they would mark the trial failed
        once it completes, so they go. Returns whether its params are still to be written
        (the driver died before the worker wrote them)."""
        from tunelib import storage

        trial_path = storage.join(self.spec.experiment_path, trial.dirname)
        if not trial.num_failures:
            for name in (ERROR_FILE, ERROR_PKL):
                try:
                    self.spec.fs.delete_file(storage.join(trial_path, name))
                except OSError:  # not there (the usual case)
                    pass
        try:
            return not storage.exists(self.spec.fs, storage.join(trial_path, PARAMS_FILE))
        except OSError:
            return True

    def _write_policy_log(self) -> None:
        """PBT's exploits, in Ray's files (see ``_layout.append_pbt_policy``)."""
        log = self.scheduler.policy_log
        for trial_id, donor_id, policy in log[self._policy_entries_written:]:
            _layout.append_pbt_policy(self.spec.fs, self.spec.experiment_path, trial_id,
                                      donor_id, policy)
        self._policy_entries_written = len(log)

    def _write_error_file(self, trial: T.Trial, text: str) -> None:
        """The worker died before it could write error.txt / error.pkl itself."""
        from tunelib._trial_writer import FsBackend, TrialWriter

        backend = FsBackend(self.spec.fs, f"{self.spec.experiment_path}/{trial.dirname}")
        writer = TrialWriter(backend, progress_header=[])
        writer.write_error(text, TuneError(text), trial.num_failures)
        writer.close()

    def _finish(self, trial: T.Trial, status: TrialStatus, removed: bool = False) -> None:
        """End ``trial`` with ``status`` (TERMINATED or ERROR); a TERMINATED trial that
        ``stopped_by`` names is recorded as STOPPED, with who stopped it and why."""
        was_running = trial.status == TrialStatus.RUNNING
        trial.status = status
        if trial.last_result:
            # its keys interned: every trial's result arrived with its own copies (~1 KB)
            trial.last_result = {sys.intern(k) if type(k) is str else k: v
                                 for k, v in trial.last_result.items()}
            trial.last_result["done"] = True
        if removed or (status == TrialStatus.TERMINATED and not was_running and self._stop_all):
            self.scheduler.on_trial_remove(self, trial)
            self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None)
        elif status == TrialStatus.TERMINATED:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None)
        if status == TrialStatus.TERMINATED:
            status = self._complete_callbacks(trial)
        if trial.trial_id in self._started_here:  # else this run has no flow run to close
            if status == TrialStatus.ERROR:
                outcome, message = TrialOutcome.ERROR, trial.error_msg or ""
            elif trial.stopped_by is StoppedBy.CANCEL:
                outcome, message = TrialOutcome.CANCELLED, trial.stop_reason
            elif trial.stopped_by is not None:
                outcome, message = TrialOutcome.STOPPED, trial.stop_reason
            else:
                outcome, message = TrialOutcome.TERMINATED, ""
            self.recorder.trial_finished(trial.trial_id, outcome, _last_line(message))
        self._let_go(trial)

    def _let_go(self, trial: T.Trial) -> None:
        """Hold a trial that ended as small as it gets (10,000 of them were most of the
        driver's memory): its state entry encoded now and kept on disk, its statistics
        packed, nothing that only running trials need."""
        self._finished_entry(trial)
        self._started_here.discard(trial.trial_id)
        self._by_id.pop(trial.trial_id, None)

    def _complete_callbacks(self, trial: T.Trial) -> TrialStatus:
        """``on_trial_complete``; a callback raising there errors the trial instead (its
        traceback in error.txt, then ``on_trial_error``), as in Ray."""
        try:
            self.callbacks.on_trial_complete(iteration=self._iteration, trials=self.trials,
                                             trial=trial)
            return TrialStatus.TERMINATED
        except Exception:
            if self.spec.fail_fast == "raise":
                raise
            text = traceback.format_exc()
            logger.error("Trial %s: a callback's on_trial_complete raised; the trial errors.\n%s",
                         trial, text)
        trial.status = TrialStatus.ERROR
        trial.num_failures += 1
        trial.error_msg, trial.error_file = text, ERROR_FILE
        self._write_error_file(trial, text)
        self.callbacks.on_trial_error(iteration=self._iteration, trials=self.trials, trial=trial)
        return TrialStatus.ERROR

    def _checkpoint_callbacks(self, trial: T.Trial) -> None:
        """``on_checkpoint`` (with the trial's new ``tune.Checkpoint``), then
        ``on_trial_save``, as Ray calls them once a checkpoint is persisted."""
        from tunelib import storage
        from tunelib.checkpoint import Checkpoint

        trial.checkpoint = Checkpoint(
            storage.join(self.spec.experiment_path, trial.dirname, trial.checkpoint_dir_name),
            self.spec.fs)
        self.callbacks.on_checkpoint(iteration=self._iteration, trials=self.trials, trial=trial,
                                     checkpoint=trial.checkpoint)
        self.callbacks.on_trial_save(iteration=self._iteration, trials=self.trials, trial=trial)

    # ------------------------------------------------------------------ state and progress
    def _may_save_now(self) -> bool:
        """A save before a trial starts is always made while the state is small; once it is
        big (thousands of trials: tens of ms a save), at most so often that saving takes 5%
        of the time, as Ray's own state saves do (TUNE_GLOBAL_CHECKPOINT_S=auto)."""
        cost = self._last_save_cost
        return (len(self.trials) < _BIG_STATE_TRIALS or cost < _CHEAP_SAVE_S
                or time.monotonic() - self._last_state_save >= 19 * cost)

    def save_state(self, final: bool = False) -> None:
        """Write ``experiment_state-<session>.json`` in Ray's structure (``_layout``).

        A write that fails (a full disk) warns once per cause while the experiment runs,
        and is a ``TuneError`` naming the file and the cause at the end (``final``)."""
        from tunelib import storage

        started = self._last_state_save = time.monotonic()
        self._unsaved.clear()
        spec = self.spec
        runner_data = _layout.runner_data(
            metric=spec.metric, mode=spec.mode, name=spec.name, session=spec.session_str,
            start_time=self._start, iteration=self._iteration,
            has_errored=any(t.status == TrialStatus.ERROR for t in self.trials),
            should_stop=self._stop_all, reuse_actors=spec.reuse_actors,
            fail_fast=spec.fail_fast, max_pending_trials=self._max_pending,
            checkpoint_config=spec.checkpoint_config, has_stopper=self.stopper is not None,
        )
        parts = _layout.experiment_state_parts(self._trial_data(), runner_data, self._start)
        path = storage.join(spec.experiment_path, _layout.experiment_state_file(spec.session_str))
        try:
            storage.write_text_parts(spec.fs, path, parts)
        except OSError as exc:
            error = TuneError(
                f"Could not save the experiment state to {storage.fs_uri(spec.fs, path)}: "
                f"{exc.strerror or exc}. What the trials wrote is on storage; free space (or "
                "fix the storage), then resume with Tuner.restore(path, trainable, "
                "resume_errored=True).")
            if final:
                raise error from exc
            if str(exc) not in self._state_save_warned:
                self._state_save_warned.add(str(exc))
                logger.warning("%s", error)
            return
        finally:
            self._last_save_cost = time.monotonic() - started
        self._save_search_state()

    def _trial_data(self) -> Iterator[str]:
        """Every trial's entry of the state file, JSON-encoded, one at a time."""
        spec = self.spec
        for trial in list(self.trials):
            if trial.is_finished():
                yield self._finished_entry(trial)
            else:
                yield _layout.encode_trial_entry(_layout.trial_state(
                    trial, spec.max_failures, spec.checkpoint_config))

    def _finished_entry(self, trial: T.Trial) -> str:
        """A finished trial's state entry, encoded once (when it ends, again only if it
        changes: a checkpoint deleted) and kept on disk: the state is saved before each new
        trial starts, and a long experiment would pay for all its trials every time. The
        trial keeps its statistics packed and lets go of its pickled config: what the
        driver kept of a finished trial was most of its memory at 10,000 trials."""
        key = (trial.status, id(trial.last_result), trial.num_failures,
               trial.checkpoint_dir_name, len(trial.kept_checkpoints))
        entry = self._finished_states.get(trial.trial_id, key)
        if entry is None:
            spec = self.spec
            entry = _layout.encode_trial_entry(_layout.trial_state(
                trial, spec.max_failures, spec.checkpoint_config))
            self._finished_states.put(trial.trial_id, key, entry)
            trial.metric_analysis = _layout.MetricAnalysis.packed(trial.metric_analysis)
            _layout.forget_config_pickle(trial)
        return entry

    def _save_search_state(self) -> None:
        """Next to the experiment state, so that a resumed run continues the search."""
        from tunelib import storage

        if not storage.is_local(self.spec.fs):
            return
        try:
            self.search_alg.save_to_dir(self.spec.experiment_path,
                                        session_str=self.spec.session_str)
        except NotImplementedError:
            pass
        except Exception:
            logger.warning("Could not save the search algorithm's state.", exc_info=True)


# --------------------------------------------------------------------------- helpers


def _max_pending_trials(search_alg) -> int:
    """Ray's rule: 200 pending trials for the basic variant generator; for a searcher, its
    ConcurrencyLimiter's limit, else 1 (so it suggests with the latest results in hand)."""
    import os

    from tunelib.search import BasicVariantGenerator, ConcurrencyLimiter

    value = os.environ.get("TUNE_MAX_PENDING_TRIALS_PG", "auto")
    if value != "auto":
        return max(1, int(value))
    if isinstance(search_alg, BasicVariantGenerator):
        return max(200, int((os.cpu_count() or 1) * 1.1))
    searcher = getattr(search_alg, "searcher", None)
    while searcher is not None:
        if isinstance(searcher, ConcurrencyLimiter):
            return searcher.max_concurrent
        searcher = getattr(searcher, "searcher", None)
    return 1


def _numbers_its_trials(search_alg) -> bool:
    """Ray's trial ids: ``<prefix>_<index>`` from the variant generator, else 8 hex digits."""
    from tunelib.search import BasicVariantGenerator

    return isinstance(search_alg, BasicVariantGenerator)


def _last_line(text: Optional[str]) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _summary_metrics(trial: T.Trial, metric: Optional[str]) -> Dict[str, Any]:
    if metric and metric in trial.last_result:
        return {metric: trial.last_result[metric]}
    return {}
