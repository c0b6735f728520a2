"""The experiment loop: trials move PENDING → RUNNING → (PAUSED) → TERMINATED | ERROR.

The controller asks the search algorithm for configs while workers are free, hands trials
to the executor, and answers every reported result with the decision of the stopper and
the scheduler. It never touches Prefect: what happens is told to a ``Recorder`` (cheap,
queued calls), which is the only thing that writes to Prefect.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from tunelib import _layout
from tunelib import trial as T
from tunelib._layout import ERROR_FILE, flatten_dict, to_json_value
from tunelib._lifecycle import (
    Decision,
    ExperimentOutcome,
    StoppedBy,
    TrialOutcome,
    TrialStatus,
)
from tunelib._progress import progress_line, status_counts
from tunelib.error import TuneError
from tunelib.executor.base import CheckpointRecord, EventKind, TrialEvent, TrialSpec

if TYPE_CHECKING:  # the collaborators' protocols and bases (no import cost at run time)
    from tunelib.executor.base import Executor
    from tunelib.recording import Recorder
    from tunelib.schedulers.trial_scheduler import TrialScheduler
    from tunelib.search.search_algorithm import SearchAlgorithm
    from tunelib.stopper import Stopper

logger = logging.getLogger("tunelib")

_STATE_SAVE_PERIOD_S = 5.0
_PROGRESS_PERIOD_S = 5.0


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
        self.callbacks = list(callbacks or [])
        self.trials: List[T.Trial] = []
        self._by_id: Dict[str, T.Trial] = {}
        self._running: Dict[str, T.Trial] = {}
        self._id_prefix = uuid.uuid4().hex[:5]
        self._search_finished = False
        self._stop_all = False
        self._stop_reason = ""
        self._fatal: Optional[BaseException] = None
        self._last_state_save = 0.0
        self._last_progress = time.monotonic()
        self._start = time.time()
        self._iteration = 0
        # decisions a scheduler asked for on trials other than the one it was deciding on
        self._queued_decisions: Dict[str, Decision] = {}
        self._deciding: Optional[str] = None
        self._max_pending = _max_pending_trials(search_alg)
        self._numbered_ids = _numbers_its_trials(search_alg)
        # trials of an earlier run of this experiment (Tuner.restore / resume=True)
        for trial in restored_trials or []:
            trial.set_storage(T.StorageContext(spec.fs, spec.experiment_path))
            self.trials.append(trial)
            self._by_id[trial.trial_id] = trial
        if id_prefix:
            self._id_prefix = id_prefix
        self._started_here: set = set()
        self._policy_entries_written = 0

    # ------------------------------------------------------------------ SchedulerController
    def get_trials(self) -> List[T.Trial]:
        return self.trials

    def get_live_trials(self) -> List[T.Trial]:
        return [t for t in self.trials if not t.is_finished()]

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

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        spec = self.spec
        for trial in self.trials:  # restored trials that will run again
            if trial.status == TrialStatus.PENDING:
                self.scheduler.on_trial_add(self, trial)
        self.recorder.experiment_started(
            spec.name, {"param_space": to_json_value(spec.param_space),
                        "num_samples": spec.num_samples,
                        "metric": spec.metric, "mode": spec.mode}, [spec.name],
        )
        try:
            while True:
                self._check_budget()
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
                if spec.verbose and now - self._last_progress > _PROGRESS_PERIOD_S:
                    self._print_progress()
        finally:
            for trial_id in list(self._running):
                self.executor.kill_trial(trial_id)
                trial = self._by_id[trial_id]
                self._running.pop(trial_id, None)
                if not trial.is_finished():
                    if self._fatal is None:
                        self._stopped(trial, StoppedBy.EXPERIMENT,
                                      self._stop_reason or "the experiment ended")
                        self._finish(trial, TrialStatus.TERMINATED)
                    else:
                        self._finish(trial, TrialStatus.ERROR)
            self.save_state()
            self._after_experiment()
        if self._fatal is not None:
            raise self._fatal

    def _after_experiment(self) -> None:
        counts = status_counts(self.trials)
        rows = [
            {"trial": str(t), "status": t.status, "iterations": t.last_result.get(
                "training_iteration", 0), **_summary_metrics(t, self.spec.metric)}
            for t in self.trials
        ]
        failed = self._fatal is not None or counts.get(TrialStatus.ERROR)
        status = ExperimentOutcome.FAILED if failed else ExperimentOutcome.COMPLETED
        self.recorder.experiment_finished(status, rows)
        for cb in self.callbacks:
            hook = getattr(cb, "on_experiment_end", None)
            if hook:
                hook(trials=self.trials)
        if self.spec.verbose:
            self._print_progress(final=True)

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
        return any(t.status in (TrialStatus.PENDING, TrialStatus.PAUSED) for t in self.trials)

    def _fill_pending(self) -> None:
        """Create trials ahead of free workers, as Ray does, so that schedulers that look at
        the whole population (synchronous HyperBand) see it."""
        if self._search_finished or self._stop_all:
            return
        pending = sum(1 for t in self.trials if t.status == TrialStatus.PENDING)
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
            if not any(t.status == TrialStatus.PENDING for t in self.trials):
                self._fill_pending()
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                return
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
            write_params=attempt == 0 or exploit is not None,
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
        if kind is EventKind.PAUSED:
            trial.status = TrialStatus.PAUSED
            self.recorder.trial_paused(trial.trial_id)
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
        for cb in self.callbacks:
            hook = getattr(cb, "on_trial_result", None)
            if hook:
                hook(iteration=self._iteration, trials=self.trials, trial=trial, result=result)
        self._iteration += 1
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
            return
        self.scheduler.on_trial_error(self, trial)
        self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None, error=True)
        trial.status = TrialStatus.ERROR
        self.recorder.trial_finished(trial.trial_id, TrialOutcome.ERROR,
                                     _last_line(event.error_text))
        if self.spec.verbose:
            print(f"Trial {trial} errored after {trial.num_failures} failure(s): "
                  f"{_last_line(event.error_text)}")
        if self.spec.fail_fast == "raise":
            self._fatal = event.error or TuneError(event.error_text)
        elif self.spec.fail_fast:
            self._stop_everything(f"trial {trial} failed and fail_fast is set")

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
            trial.last_result = dict(trial.last_result, done=True)
        if removed or (status == TrialStatus.TERMINATED and not was_running and self._stop_all):
            self.scheduler.on_trial_remove(self, trial)
            self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None)
        elif status == TrialStatus.TERMINATED:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None)
        if trial.attempts:  # a trial that never started has no flow run to close
            if status == TrialStatus.ERROR:
                outcome, message = TrialOutcome.ERROR, trial.error_msg or ""
            elif trial.stopped_by is not None:
                outcome, message = TrialOutcome.STOPPED, trial.stop_reason
            else:
                outcome, message = TrialOutcome.TERMINATED, ""
            self.recorder.trial_finished(trial.trial_id, outcome, _last_line(message))
        for cb in self.callbacks:
            hook = getattr(cb, "on_trial_complete", None)
            if hook:
                hook(iteration=self._iteration, trials=self.trials, trial=trial)

    # ------------------------------------------------------------------ state and progress
    def save_state(self) -> None:
        """Write ``experiment_state-<session>.json`` in Ray's structure (``_layout``)."""
        from tunelib import storage

        self._last_state_save = time.monotonic()
        spec = self.spec
        runner_data = {
            "_metric": spec.metric,
            "_session_str": spec.session_str,
            "_start_time": self._start,
            "_total_time": time.time() - self._start,
            "_iteration": self._iteration,
            "_has_errored": any(t.status == TrialStatus.ERROR for t in self.trials),
            "_should_stop_experiment": self._stop_all,
            "_tunelib": {"mode": spec.mode, "name": spec.name},
        }
        text = _layout.experiment_state(
            [_layout.trial_state(t, spec.max_failures, spec.checkpoint_config)
             for t in self.trials], runner_data, self._start)
        path = storage.join(spec.experiment_path, _layout.experiment_state_file(spec.session_str))
        storage.write_text(spec.fs, path, text)
        self._save_search_state()

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

    def _print_progress(self, final: bool = False) -> None:
        self._last_progress = time.monotonic()
        print(progress_line(self.spec.name, self.trials, time.time() - self._start,
                            self.spec.metric, self.spec.mode, final), flush=True)


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
