"""Trial results on the terminal as they come (Ray's ``TrialProgressCallback``).

With ``verbose=2`` one line per result, with 3 each result in full (``pretty_print``); a
trial's results are printed at most once every 5 s, but its last result and its errors
always. The experiment's status block is ``tunelib._reporters``'.

Example output (``verbose=2``, ``metric="loss"``)::

    Trial train_fn_1a2b3_00000 reported loss=0.40 with parameters={'lr': 0.1}.
    Trial train_fn_1a2b3_00000 reported loss=0.19 with parameters={'lr': 0.1}. This trial completed.
"""

from __future__ import annotations

import collections
import numbers
import time
from typing import Any, Dict, List, Optional, Sequence

from tunelib import _layout, storage
from tunelib._callbacks import Callback
from tunelib._loggers import pretty_print
from tunelib.result import _AUTO_RESULT_KEYS
from tunelib.trial import Trial

__all__ = ["TrialProgressCallback"]

# Ray's DEBUG_PRINT_INTERVAL: a trial's results are printed at most this often
_RESULT_PRINT_INTERVAL_S = 5.0
_SKIP_IN_RESULT_LINE = {"config", "trial_id", "experiment_tag", "done"}


class TrialProgressCallback(Callback):
    """Prints trial results as they come (Ray's ``TrialProgressCallback``): with
    ``verbose=2`` one line per result, with 3 each result in full; at most one print per
    trial every 5 s, but always a trial's last result and its errors.

    ``progress_metrics`` limits the line to those metrics (and ``metric``). tunelib adds one
    (with the run's ``verbose``) unless one is passed.

    Example::

        callbacks = [TrialProgressCallback(metric="loss", progress_metrics=["acc"], verbose=2)]
        tune.run(train_fn, config=space, callbacks=callbacks, verbose=2)
    """

    def __init__(self, metric: Optional[str] = None,
                 progress_metrics: Optional[Sequence[str]] = None, verbose: int = 3):
        self._last_print: Dict[Trial, float] = collections.defaultdict(float)
        self._last_print_iteration: Dict[Trial, Any] = collections.defaultdict(int)
        self._completed_trials: set = set()
        self._last_result_str: Dict[Trial, str] = {}
        self._metric = metric
        self._progress_metrics = set(progress_metrics or [])
        if self._metric and self._progress_metrics:
            self._progress_metrics.add(self._metric)
        self._verbose = verbose

    def on_trial_result(self, iteration: int, trials: List[Trial], trial: Trial, result: Dict,
                        **info):
        self.log_result(trial, result, error=False)

    def on_trial_error(self, iteration: int, trials: List[Trial], trial: Trial, **info):
        self.log_result(trial, trial.last_result, error=True)
        self._forget(trial)

    def on_trial_complete(self, iteration: int, trials: List[Trial], trial: Trial, **info):
        if trial in self._completed_trials:
            self._forget(trial)
            return
        self._completed_trials.add(trial)
        line = self._print_result(trial.last_result)
        if line != self._last_result_str.get(trial, ""):
            self.log_result(trial, trial.last_result, error=False)
        elif self._verbose >= 2:
            print(f"Trial {trial} completed. Last result: {line}", flush=True)
        self._forget(trial)

    def _forget(self, trial: Trial) -> None:
        """What was kept to pace a trial's prints (it has ended: 10,000 trials kept it all)."""
        self._last_print.pop(trial, None)
        self._last_print_iteration.pop(trial, None)
        self._last_result_str.pop(trial, None)

    def log_result(self, trial: Trial, result: Dict, error: bool = False) -> None:
        done = result.get("done", False) is True
        due = time.time() - self._last_print[trial] > _RESULT_PRINT_INTERVAL_S
        if done:
            self._completed_trials.add(trial)
        if done or error or due:
            self.print_result(trial, result, error, done)
            self._last_print[trial] = time.time()
            if "training_iteration" in result:
                self._last_print_iteration[trial] = result["training_iteration"]

    def print_result(self, trial: Trial, result: Dict, error: bool, done: bool) -> None:
        if self._verbose >= 3:
            if result.get("training_iteration") != self._last_print_iteration[trial]:
                print(f"Result for {trial}:")
                print("  " + pretty_print(result).replace("\n", "\n  "), flush=True)
            if done:
                print(f"Trial {trial} completed.", flush=True)
        elif self._verbose >= 2:
            line = self._print_result(result)
            self._last_result_str[trial] = line
            if error:
                error_file = storage.join(trial.path or "", "error.txt")
                message = (f"The trial {trial} errored with parameters={trial.config}. "
                           f"Error file: {error_file}")
            elif self._metric:
                value = result.get(self._metric, -99.0)
                shown = f"{value:.2f}" if isinstance(value, numbers.Real) else value
                info = " This trial completed." if done else ""
                message = (f"Trial {trial} reported {self._metric}={shown} with "
                           f"parameters={trial.config}.{info}")
            else:
                info = " This trial completed." if done else ""
                message = f"Trial {trial} reported {line} with parameters={trial.config}.{info}"
            print(message, flush=True)

    def _print_result(self, result: Dict) -> str:
        if self._progress_metrics:
            flat = _layout.flatten_dict(result)
            shown = {m: flat.get(m) for m in self._progress_metrics}
        else:
            shown = {k: v for k, v in result.items()
                     if k not in _SKIP_IN_RESULT_LINE and k not in _AUTO_RESULT_KEYS}
        return ",".join(f"{k}={v}" for k, v in shown.items() if v is not None)
