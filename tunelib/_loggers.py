"""Ray's logger callbacks (``ray.tune.logger``): ``LoggerCallback``, the JSON and CSV
loggers, and ``pretty_print``; the TensorBoard logger is ``tunelib._tensorboard``'s.

Every trial writes ``result.json``, ``progress.csv`` and ``params.json``/``params.pkl`` in
Ray's format itself, in its worker, whatever the callbacks (tunelib's results are read
from them). So ``JsonLoggerCallback`` and ``CSVLoggerCallback`` are accepted (and may be
subclassed: their ``log_trial_*`` hooks are called) but write nothing a second time; with
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` those files are still written.

Example::

    from tunelib.tune.logger import LoggerCallback

    class PrintLogger(LoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            print(trial, result["training_iteration"])
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

import numpy as np
import yaml

from tunelib import _layout
from tunelib._callbacks import Callback

if TYPE_CHECKING:
    from tunelib.trial import Trial

logger = logging.getLogger("tunelib")

__all__ = ["CSVLoggerCallback", "JsonLoggerCallback", "LoggerCallback", "pretty_print"]

_SEQUENCE_LEN_FLOW_STYLE = 3


class LoggerCallback(Callback):
    """A callback that logs trial events (Ray's ``ray.tune.logger.LoggerCallback``):
    override ``log_trial_start``, ``log_trial_result``, ``log_trial_end`` (close files
    there), ``log_trial_save``, ``log_trial_restore``.

    Example::

        class PrintLogger(LoggerCallback):
            def log_trial_result(self, iteration, trial, result):
                print(trial, result["training_iteration"])
    """

    def log_trial_start(self, trial: "Trial"):
        """An attempt of ``trial`` started."""

    def log_trial_restore(self, trial: "Trial"):
        """Never called, as ``on_trial_restore`` in Ray 2.60."""

    def log_trial_save(self, trial: "Trial"):
        """``trial`` saved a checkpoint."""

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict):
        """``trial`` reported ``result``."""

    def log_trial_end(self, trial: "Trial", failed: bool = False):
        """``trial`` ended (``failed``: with an error)."""

    def on_trial_result(self, iteration: int, trials: List["Trial"], trial: "Trial",
                        result: Dict, **info):
        self.log_trial_result(iteration, trial, result)

    def on_trial_start(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        self.log_trial_save(trial)

    def on_trial_complete(self, iteration: int, trials: List["Trial"], trial: "Trial",
                          **info):
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: List["Trial"], trial: "Trial", **info):
        self.log_trial_end(trial, failed=True)


class JsonLoggerCallback(LoggerCallback):
    """Ray's JSON logger. Accepted, and writes nothing: each trial's worker already writes
    ``result.json``, ``params.json`` and ``params.pkl`` in Ray's format."""

    _SAVED_FILE_TEMPLATES = [_layout.RESULT_FILE, _layout.PARAMS_FILE, _layout.PARAMS_PKL]


class CSVLoggerCallback(LoggerCallback):
    """Ray's CSV logger. Accepted, and writes nothing: each trial's worker already writes
    ``progress.csv`` in Ray's format."""

    _SAVED_FILE_TEMPLATES = [_layout.PROGRESS_FILE]


class _RayDumper(yaml.SafeDumper):
    """Ray's YAML: sequences longer than three items on one line."""

    def represent_sequence(self, tag, sequence, flow_style=None):
        if len(sequence) > _SEQUENCE_LEN_FLOW_STYLE:
            return super().represent_sequence(tag, sequence, flow_style=True)
        return super().represent_sequence(tag, sequence, flow_style=flow_style)


def _json_safe(value: Any) -> Any:
    """Ray's ``SafeFallbackEncoder``: numpy as Python, NaN as null, the rest as str."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Number):
        number = float(value)
        return None if math.isnan(number) else number
    return str(value)


def pretty_print(result: Dict, exclude: Optional[Set[str]] = None) -> str:
    """``result`` as Ray prints it (YAML, keys sorted, ``config`` and None values left out).

    >>> print(pretty_print({"loss": 0.5, "config": {"lr": 0.1}, "done": False}), end="")
    done: false
    loss: 0.5
    """
    out = {k: v for k, v in result.items()
           if v is not None and k not in ("config", "hist_stats")
           and (exclude is None or k not in exclude)}
    cleaned = json.loads(json.dumps(out, default=_json_safe))
    return yaml.dump(cleaned, Dumper=_RayDumper, default_flow_style=False)
