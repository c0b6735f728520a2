"""The scheduler interface, the controller surface schedulers may use, and FIFO.

A scheduler is pure logic: the controller feeds it trials and results, it answers
with a decision (``CONTINUE`` / ``PAUSE`` / ``STOP`` / ``NOOP``) and may make the few
requests listed in :class:`SchedulerController`. It never does I/O.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from tunelib._lifecycle import Decision
from tunelib.trial import PAUSED, PENDING, Trial

#: Ray's anonymous metric, used when only a ``mode`` is given (``ray.tune.result.DEFAULT_METRIC``).
DEFAULT_METRIC = "_metric"


@runtime_checkable
class SchedulerController(Protocol):
    """What a scheduler may call on the ``tune_controller`` passed to its hooks.

    The experiment controller implements this; schedulers use nothing else.
    Schedulers call these from inside their hooks. The controller may act at once
    (Ray calls ``on_trial_remove`` from inside ``stop_trial``) or right after the hook
    returns; schedulers rely on neither, and the methods must never block on a trial.

    ``get_trials()``
        Every trial of the experiment, in creation order, whatever its status.
    ``get_live_trials()``
        The trials that are not finished (status PENDING, RUNNING or PAUSED).
    ``pause_trial(trial, should_checkpoint=True)``
        Pause ``trial`` (RUNNING -> PAUSED), persisting a checkpoint first when
        ``should_checkpoint``; a PAUSED trial is restarted later from that
        checkpoint when :meth:`TrialScheduler.choose_trial_to_run` returns it.
    ``stop_trial(trial)``
        Terminate ``trial`` (any live status -> TERMINATED) as if it had finished;
        the controller then calls ``on_trial_complete`` (RUNNING) or
        ``on_trial_remove`` (PENDING/PAUSED) on the scheduler as usual.
    ``exploit(trial, donor_trial, new_config, new_tag) -> bool``
        PBT's exploit step: ``trial`` gives up its own state and continues from a
        clone of ``donor_trial``. Return ``False`` (and change nothing) when the
        donor has no checkpoint to clone; the scheduler then skips the exploit,
        as Ray does. Otherwise return ``True`` and:

        1. set ``trial.config = new_config`` and ``trial.experiment_tag = new_tag``
           (``set_config`` / ``set_experiment_tag``);
        2. set ``trial.restore_from`` to the donor's latest persisted checkpoint;
        3. pause ``trial`` **without** saving its own checkpoint. If ``trial`` is the
           RUNNING trial whose result is being handled, the scheduler returns
           ``PAUSE`` for that result and the controller must honour it without
           checkpointing; if it is already PAUSED (synchronous PBT), nothing else
           is needed;
        4. when ``trial`` is next started (``choose_trial_to_run`` returns it), start
           it from ``trial.restore_from`` with ``trial.config``, then clear
           ``restore_from``. Its ``training_iteration`` and time counters continue
           from the donor's checkpoint, as in Ray.
    """

    def get_trials(self) -> List[Trial]: ...

    def get_live_trials(self) -> List[Trial]: ...

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None: ...

    def stop_trial(self, trial: Trial) -> None: ...

    def exploit(
        self, trial: Trial, donor_trial: Trial, new_config: Dict[str, Any], new_tag: str
    ) -> bool: ...


class TrialScheduler:
    """Interface for a trial scheduler: results in, decisions out.

    The controller calls ``on_trial_add`` for each new trial, ``on_trial_result``
    for each result of a RUNNING trial (the return value is the decision),
    ``on_trial_complete`` / ``on_trial_error`` when a RUNNING trial ends,
    ``on_trial_remove`` when a PENDING/PAUSED trial is stopped, and
    ``choose_trial_to_run`` whenever it has room for one more trial.

    Results are flat dicts (nested keys joined with ``/``), as Ray passes them.
    Decisions: ``CONTINUE`` keep running; ``PAUSE`` checkpoint, pause, and free the
    resources (``choose_trial_to_run`` resumes it later); ``STOP`` terminate the
    trial; ``NOOP`` the scheduler already acted on the trial through the controller.

    Example::

        class EveryOtherStop(FIFOScheduler):
            def on_trial_result(self, tune_controller, trial, result):
                return self.STOP if result["training_iteration"] >= 2 else self.CONTINUE
    """

    CONTINUE = Decision.CONTINUE  #: keep the trial running
    PAUSE = Decision.PAUSE  #: checkpoint and pause the trial
    STOP = Decision.STOP  #: terminate the trial
    NOOP = Decision.NOOP  #: the scheduler has already acted through the controller

    _metric: Optional[str] = None
    _supports_buffered_results = True

    def __init__(self) -> None:
        pass

    @property
    def metric(self) -> Optional[str]:
        """The metric this scheduler reads from results (None until known)."""
        return self._metric

    @property
    def supports_buffered_results(self) -> bool:
        """Whether the controller may coalesce several results before asking."""
        return self._supports_buffered_results

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        """Pass the experiment's ``metric``/``mode`` when not given to the constructor.

        Returns False if the scheduler already has a different value set, True otherwise.
        """
        if self._metric and metric:
            return False
        if metric:
            self._metric = metric
        if self._metric is None:
            self._metric = DEFAULT_METRIC
        return True

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Called when a new trial is added to the experiment."""
        raise NotImplementedError

    def on_trial_error(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Called when a RUNNING trial raised an error."""
        raise NotImplementedError

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        """Called on each result of a RUNNING trial; returns CONTINUE, PAUSE, STOP or NOOP."""
        raise NotImplementedError

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> None:
        """Called when a RUNNING trial finished (naturally or stopped) with its last result."""
        raise NotImplementedError

    def on_trial_remove(self, tune_controller: SchedulerController, trial: Trial) -> None:
        """Called when a PENDING or PAUSED trial is removed (stopped without running)."""
        raise NotImplementedError

    def choose_trial_to_run(self, tune_controller: SchedulerController) -> Optional[Trial]:
        """Return a PENDING or PAUSED trial to (re)start, or None. Must be idempotent."""
        raise NotImplementedError

    def debug_string(self) -> str:
        """A one-line human readable status."""
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        """Save the scheduler state to ``checkpoint_path`` (not supported by default)."""
        raise NotImplementedError

    def restore(self, checkpoint_path: str) -> None:
        """Restore the scheduler state from ``checkpoint_path`` (not supported by default)."""
        raise NotImplementedError


class FIFOScheduler(TrialScheduler):
    """Runs trials in submission order, never pauses or stops them.

    Example::

        tune.TuneConfig(scheduler=FIFOScheduler())
    """

    def __init__(self) -> None:
        super().__init__()

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        pass

    def on_trial_error(self, tune_controller: SchedulerController, trial: Trial) -> None:
        pass

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        return TrialScheduler.CONTINUE

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> None:
        pass

    def on_trial_remove(self, tune_controller: SchedulerController, trial: Trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller: SchedulerController) -> Optional[Trial]:
        trials = _from_first_unfinished(tune_controller)
        for trial in trials:
            if trial.status == PENDING:
                return trial
        for trial in trials:
            if trial.status == PAUSED:
                return trial
        return None

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


def _from_first_unfinished(tune_controller: SchedulerController) -> List[Trial]:
    """The trials a scan for a PENDING or PAUSED one must look at: tunelib's controller's
    from its first unfinished trial on (the finished head of a 10,000-trial experiment is
    neither; scanning it made every launch O(n)), any other controller's all of them."""
    if callable(getattr(type(tune_controller), "_unfinished", None)):  # not a Mock's
        return tune_controller._unfinished()
    return tune_controller.get_trials()
