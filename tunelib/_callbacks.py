"""Ray's experiment callbacks: the ``Callback`` base and the dispatcher the controller calls.

The controller calls one :class:`CallbackList` at each of Ray 2.60's hook points, in Ray's
order (for one trial: ``on_trial_start``, then per result ``on_trial_result``,
``on_checkpoint``, ``on_trial_save``; a failure ``on_trial_recover`` or ``on_trial_error``;
the end ``on_trial_complete``), with Ray's arguments (``iteration`` is the loop step).
``on_trial_restore`` exists for subclasses but is never called, as in Ray 2.60.

A callback that raises gets Ray's treatment, per hook (:data:`ON_RAISE`):

- ``on_trial_result``, ``on_trial_save``, ``on_trial_recover``, ``on_trial_error``: the
  experiment fails with a ``TuneError`` holding the traceback (the exception itself with
  ``fail_fast="raise"``);
- ``on_checkpoint``: logged, and the run goes on;
- ``on_trial_complete``: the trial errors (the controller records the traceback);
- the others (``setup``, ``on_step_*``, ``on_trial_start``, ``on_experiment_end``): the
  experiment fails with the exception.

The terminal reporter and the default loggers are callbacks too
(:func:`create_default_callbacks`). Example::

    from tunelib._callbacks import Callback, CallbackList

    class Count(Callback):
        def __init__(self):
            self.results = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results += 1

    callbacks = CallbackList([Count()])
    callbacks.on_trial_result(iteration=0, trials=[], trial=None, result={})
"""

from __future__ import annotations

import enum
import logging
import os
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from tunelib.error import TuneError

if TYPE_CHECKING:
    from tunelib._reporters import ProgressLoop
    from tunelib.trial import Trial

logger = logging.getLogger("tunelib")

__all__ = ["Callback", "CallbackList", "ON_RAISE", "OnRaise", "create_default_callbacks"]


class Callback:
    """Hooks into the experiment loop (Ray's ``ray.tune.Callback``); override what you need.

    Every hook receives keyword arguments only, and ``**info`` for arguments later
    versions add. Pass instances in ``RunConfig(callbacks=[...])`` or
    ``tune.run(callbacks=[...])``.

    Example::

        class PrintResults(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                print(f"{trial}: {result['loss']}")
    """

    # file name patterns this callback writes into each trial's directory (Ray's)
    _SAVED_FILE_TEMPLATES: List[str] = []

    def setup(self, stop=None, num_samples: Optional[int] = None,
              total_num_samples: Optional[int] = None, **info):
        """Called once, before the first trial starts: ``stop`` is the ``stop`` dict (``{}``
        when the stopping criteria are not a dict), ``num_samples`` as given,
        ``total_num_samples`` counting grid-search variants; ``info`` has ``time_budget_s``."""

    def on_step_begin(self, iteration: int, trials: List["Trial"], **info):
        """Called at the start of each step of the experiment loop."""

    def on_step_end(self, iteration: int, trials: List["Trial"], **info):
        """Called at the end of each step (``iteration`` already counts it)."""

    def on_trial_start(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        """Called when an attempt of ``trial`` starts (first run, retry, unpause)."""

    def on_trial_restore(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        """Never called, as in Ray 2.60 (kept for subclasses)."""

    def on_trial_save(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        """Called after ``trial`` saved a checkpoint (after ``on_checkpoint``)."""

    def on_trial_result(self, iteration: int, trials: List["Trial"], trial: "Trial",
                        result: Dict, **info):
        """Called for each result ``trial`` reports, after the scheduler and the search
        algorithm saw it; ``result["done"]`` is True when it was the trial's last."""

    def on_trial_complete(self, iteration: int, trials: List["Trial"], trial: "Trial",
                          **info):
        """Called when ``trial`` ended without error (finished, or stopped)."""

    def on_trial_recover(self, iteration: int, trials: List["Trial"], trial: "Trial",
                         **info):
        """Called when ``trial`` failed and will be retried (``FailureConfig.max_failures``)."""

    def on_trial_error(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        """Called when ``trial`` failed for good."""

    def on_checkpoint(self, iteration: int, trials: List["Trial"], trial: "Trial",
                      checkpoint, **info):
        """Called when ``trial`` saved ``checkpoint`` (a ``tune.Checkpoint`` on storage)."""

    def on_experiment_end(self, trials: List["Trial"], **info):
        """Called once, after every trial has ended (also when the experiment fails)."""

    def get_state(self) -> Optional[Dict]:
        """The callback's state to save with the experiment (None: nothing to save)."""
        return None

    def set_state(self, state: Dict):
        """Restore what :meth:`get_state` returned."""


class OnRaise(str, enum.Enum):
    """What a hook's exception does to the experiment (Ray 2.60's behaviour)."""

    FAIL = "fail"                  # the experiment fails with the exception
    FAIL_TUNE_ERROR = "tune_error"  # ... with a TuneError holding the traceback
    LOG = "log"                    # logged; the run goes on


# Hooks Ray calls from a trial event's handler fail with a TuneError (the exception itself
# with fail_fast="raise"); on_checkpoint's errors are logged. Everything else propagates
# (on_trial_complete too: the controller turns that into the trial's error, as Ray does).
ON_RAISE: Mapping[str, OnRaise] = {
    "on_trial_result": OnRaise.FAIL_TUNE_ERROR,
    "on_trial_save": OnRaise.FAIL_TUNE_ERROR,
    "on_trial_recover": OnRaise.FAIL_TUNE_ERROR,
    "on_trial_error": OnRaise.FAIL_TUNE_ERROR,
    "on_checkpoint": OnRaise.LOG,
}


class CallbackList:
    """Calls each callback's hook in order (see the module docstring for errors).

    Callbacks need not subclass :class:`Callback`: a hook an object lacks is skipped.
    ``progress`` (a :class:`~tunelib._reporters.ProgressLoop`) reports the experiment's
    status after each step's ``on_step_end`` and once more, finally, before
    ``on_experiment_end``, as Ray's loop does. ``stop`` is the ``stop`` dict ``setup``
    passes on.
    """

    def __init__(self, callbacks: Iterable[Any] = (), progress: Optional["ProgressLoop"] = None,
                 stop: Optional[Mapping] = None, fail_fast: Any = False):
        self.callbacks = list(callbacks)
        self.progress = progress
        self._stop = dict(stop) if isinstance(stop, Mapping) else {}
        self._fail_fast = fail_fast

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def _call(self, hook: str, **info) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is None:
                continue
            try:
                method(**info)
            except Exception as exc:
                _on_raise(hook, exc, self._fail_fast)

    # ------------------------------------------------------------------ Ray's hooks
    def setup(self, **info) -> None:
        """``setup(stop=..., num_samples=..., total_num_samples=..., time_budget_s=...)``;
        a ``setup`` written for an older signature is called without arguments, with
        Ray's FutureWarning."""
        info = {"stop": self._stop, **info}
        for callback in self.callbacks:
            method = getattr(callback, "setup", None)
            if method is None:
                continue
            try:
                method(**info)
            except TypeError as exc:
                if "argument" not in str(exc):
                    raise
                warnings.warn(
                    f"Please update `setup` method in callback `{callback.__class__}` to match "
                    "the method signature in `ray.tune.callback.Callback`.", FutureWarning,
                    stacklevel=2)
                method()
        if self.progress is not None:
            self.progress.setup(total_samples=info.get("total_num_samples"))

    def on_step_begin(self, **info) -> None:
        self._call("on_step_begin", **info)

    def on_step_end(self, **info) -> None:
        self._call("on_step_end", **info)
        if self.progress is not None:
            self.progress.report(info["trials"], done=False)

    def on_trial_start(self, **info) -> None:
        self._call("on_trial_start", **info)

    def on_trial_restore(self, **info) -> None:
        self._call("on_trial_restore", **info)

    def on_trial_save(self, **info) -> None:
        self._call("on_trial_save", **info)

    def on_trial_result(self, **info) -> None:
        self._call("on_trial_result", **info)

    def on_checkpoint(self, **info) -> None:
        self._call("on_checkpoint", **info)

    def on_trial_recover(self, **info) -> None:
        self._call("on_trial_recover", **info)

    def on_trial_error(self, **info) -> None:
        self._call("on_trial_error", **info)

    def on_trial_complete(self, **info) -> None:
        self._call("on_trial_complete", **info)

    def on_experiment_end(self, **info) -> None:
        if self.progress is not None:
            self.progress.report(info["trials"], done=True)
        self._call("on_experiment_end", **info)


def _on_raise(hook: str, exc: Exception, fail_fast: Any) -> None:
    """Apply :data:`ON_RAISE` to ``exc``, raised by a callback's ``hook``."""
    rule = ON_RAISE.get(hook, OnRaise.FAIL)
    if rule is OnRaise.LOG:
        logger.error("A callback's `%s` raised; the experiment goes on.", hook, exc_info=exc)
        return
    if rule is OnRaise.FAIL_TUNE_ERROR and fail_fast != "raise" and not isinstance(exc, TuneError):
        raise TuneError(traceback.format_exc()) from exc
    raise exc


def create_default_callbacks(
    callbacks: Optional[Sequence[Any]],
    *,
    progress_reporter: Any = None,
    verbose: int = 3,
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    stop: Any = None,
    fail_fast: Any = False,
    scheduler: Any = None,
    total_resources: Optional[Tuple[int, int]] = None,
) -> CallbackList:
    """The experiment's callbacks, as Ray assembles them: the user's, then the trial
    result printer (``verbose`` 2 and 3), then a ``TBXLoggerCallback`` when tensorboardX
    is installed and none was passed (unless ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``).

    ``progress_reporter`` (default: a ``CLIReporter``, or a ``JupyterNotebookReporter`` in
    a notebook) prints the status block from ``verbose=1`` on, with the ``scheduler``'s
    line and the resources in use out of ``total_resources`` (CPUs, GPUs; None: not
    shown). Json and CSV logger callbacks are not added: every trial writes
    ``result.json`` and ``progress.csv`` itself.

    Raises TypeError for a ``progress_reporter`` that is not a ProgressReporter.
    """
    from tunelib._reporters import ProgressLoop, detect_reporter, sys_info_lines
    from tunelib._tensorboard import TBXLoggerCallback, tensorboardx_available
    from tunelib._trial_progress import TrialProgressCallback

    callbacks = list(callbacks or [])
    reporter = progress_reporter if progress_reporter is not None else detect_reporter(verbose)
    progress = ProgressLoop(reporter, verbose=verbose, metric=metric, mode=mode,
                            sys_info=sys_info_lines(scheduler, total_resources))
    if not any(isinstance(c, TrialProgressCallback) for c in callbacks):
        callbacks.append(TrialProgressCallback(metric=metric, verbose=verbose))
    if (os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0") != "1"
            and not any(isinstance(c, TBXLoggerCallback) for c in callbacks)
            and tensorboardx_available()):
        callbacks.append(TBXLoggerCallback())
    return CallbackList(callbacks, progress=progress, stop=stop, fail_fast=fail_fast)
