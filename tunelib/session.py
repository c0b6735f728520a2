"""The trial session: what ``tune.report``, ``tune.get_checkpoint`` and ``tune.get_context``
see inside a running trial.

One session exists per running trial, in the worker process that runs it. ``report()`` is
the hot path: it fills Ray's automatic result fields, appends the result to storage,
persists the checkpoint, sends the result to the driver and returns the driver's decision
(continue, or unwind the trainable to stop or pause it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Optional

from tunelib._lifecycle import Decision
from tunelib.executor.base import CheckpointRecord

CONTINUE = Decision.CONTINUE
STOP = Decision.STOP
PAUSE = Decision.PAUSE


class TrialInterrupted(BaseException):
    """Unwinds a function trainable that the scheduler or a stopper stopped or paused.

    A BaseException, so that a user's ``except Exception`` does not swallow it; ``finally``
    blocks (temporary checkpoint dirs...) still run.
    """

    def __init__(self, decision: str):
        super().__init__(decision)
        self.decision = decision


_HOSTNAME = socket.gethostname()
try:
    _NODE_IP = socket.gethostbyname(_HOSTNAME)
except OSError:
    _NODE_IP = "127.0.0.1"

_local = threading.local()
_process_session: Optional["TrialSession"] = None


def _current() -> Optional["TrialSession"]:
    return getattr(_local, "session", None) or _process_session


def set_session(session: Optional["TrialSession"]) -> None:
    global _process_session
    _process_session = session
    _local.session = session


def _require_session(api: str) -> "TrialSession":
    session = _current()
    if session is None:
        raise RuntimeError(
            f"`{api}` was called outside of a trial. Call it from inside the trainable "
            "function passed to tune.Tuner / tune.run, while it runs."
        )
    return session


class TrialSession:
    """State of one running trial attempt, owned by the worker that runs it."""

    def __init__(
        self,
        spec,
        writer,
        send_result: Callable[[Dict[str, Any], Optional[CheckpointRecord]], Decision],
        checkpoint_factory: Callable[[str], Any],
    ):
        self.spec = spec
        self.writer = writer
        self._send_result = send_result
        self._checkpoint_factory = checkpoint_factory
        self.iteration = spec.start_iteration
        self.iterations_since_restore = 0
        self.time_total = spec.start_time_total
        self.time_since_restore = 0.0
        self.next_checkpoint_index = spec.next_checkpoint_index
        self.latest_checkpoint = (
            checkpoint_factory(spec.restore_checkpoint) if spec.restore_checkpoint else None
        )
        self.config = spec.config
        self._last_time = time.time()
        self._pid = os.getpid()
        self.last_result: Dict[str, Any] = {}

    # Ray's automatic fields, in Ray's key order (see shared/fixtures)
    def _autofill(self, metrics: Dict[str, Any], function_style: bool) -> Dict[str, Any]:
        now = time.time()
        this_iter = now - self._last_time
        self._last_time = now
        self.iteration += 1
        self.iterations_since_restore += 1
        self.time_total += this_iter
        self.time_since_restore += this_iter
        result = dict(metrics)
        if function_style:
            result.setdefault("timestamp", int(now))
            result.setdefault("checkpoint_dir_name", None)
        result.setdefault("done", False)
        result["training_iteration"] = self.iteration
        result["trial_id"] = self.spec.trial_id
        result["date"] = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
        if not function_style:
            result.setdefault("timestamp", int(now))
        result["time_this_iter_s"] = this_iter
        result["time_total_s"] = self.time_total
        result["pid"] = self._pid
        result["hostname"] = _HOSTNAME
        result["node_ip"] = _NODE_IP
        result["config"] = self.config
        result["time_since_restore"] = self.time_since_restore
        result["iterations_since_restore"] = self.iterations_since_restore
        return result

    def persist_checkpoint(self, local_dir: str, metrics: Dict[str, Any]) -> CheckpointRecord:
        record = self.writer.persist_checkpoint(local_dir, self.next_checkpoint_index, metrics)
        self.next_checkpoint_index = record.next_index
        self.latest_checkpoint = self._checkpoint_factory(record.name)
        return record

    def report(self, metrics: Dict[str, Any], checkpoint=None,
               function_style: bool = True) -> Decision:
        """Record one result; returns the driver's decision (CONTINUE, STOP or PAUSE)."""
        if not isinstance(metrics, dict):
            raise TypeError(
                f"`metrics` passed to report() must be a dict, got {type(metrics).__name__}."
            )
        result = self._autofill(plain_numbers(metrics), function_style)
        record = None
        if checkpoint is not None:
            local = _local_checkpoint_dir(checkpoint)
            record = self.persist_checkpoint(local, result)
            # Ray's order: the checkpoint fields sit right after the timestamp
            result["checkpoint_dir_name"] = record.name
            if function_style:
                result = _insert_after(result, "checkpoint_dir_name", "should_checkpoint", True)
        self.writer.append_result(result)
        self.last_result = result
        return self._send_result(result, record)


def plain_numbers(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """``metrics`` with numpy's numeric scalars (nested dicts too) as Python's bool, int and
    float: the values the driver, the schedulers and ``Result.metrics`` see are the ones
    result.json holds (``np.longdouble`` has no JSON of its own). Arrays stay arrays.

    >>> import numpy as np
    >>> plain_numbers({"acc": np.float32(0.5), "n": {"steps": np.int64(3)}})
    {'acc': 0.5, 'n': {'steps': 3}}
    """
    out = None
    for key, value in metrics.items():
        plain = _plain_number(value)
        if plain is not value:
            if out is None:
                out = dict(metrics)
            out[key] = plain
    return metrics if out is None else out


def _plain_number(value: Any) -> Any:
    if isinstance(value, dict):
        return plain_numbers(value)
    if type(value).__module__ != "numpy":
        return value
    import numpy as np

    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value  # arrays, complex, datetime64...: the JSON encoder's


def _insert_after(d: Dict[str, Any], anchor: str, key: str, value) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if k == key:
            continue
        out[k] = v
        if k == anchor:
            out[key] = value
    return out


def _local_checkpoint_dir(checkpoint) -> str:
    from tunelib.checkpoint import Checkpoint

    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(
            "`checkpoint` passed to report() must be a tune.Checkpoint "
            f"(e.g. tune.Checkpoint.from_directory(dir)), got {type(checkpoint).__name__}."
        )
    from pyarrow.fs import LocalFileSystem

    if checkpoint.filesystem is None or isinstance(checkpoint.filesystem, LocalFileSystem):
        if not os.path.isdir(checkpoint.path):
            raise FileNotFoundError(
                f"The checkpoint directory {checkpoint.path!r} passed to report() does not exist."
            )
        return checkpoint.path
    return checkpoint.to_directory()


# --------------------------------------------------------------------------- public API


_warned_keywords: set = set()


def warn_ignored_keywords(api: str, keywords: Dict[str, Any]) -> None:
    """Ray accepts no other keywords here; say once per name that tunelib ignores it."""
    import warnings

    for name in sorted(set(keywords) - _warned_keywords):
        _warned_keywords.add(name)
        warnings.warn(f"{api}() got the keyword argument {name!r}, which tunelib ignores "
                      "(Ray's signature is report(metrics, *, checkpoint=None)).",
                      UserWarning, stacklevel=3)


def report(metrics: Dict[str, Any], *, checkpoint=None, **ignored) -> None:
    """Report metrics (and optionally a checkpoint) for the current iteration of a trial.

    Example::

        def train_fn(config):
            for i in range(10):
                tune.report({"loss": 1 / (i + 1)})

    The call returns once the result is on storage and the driver has decided whether the
    trial continues; when a scheduler or stopper ends the trial, ``report`` does not return:
    the trainable is unwound (its ``finally`` blocks run).
    """
    if ignored:
        warn_ignored_keywords("report", ignored)
    session = _current()
    if session is None:  # Ray warns once and returns (a script run without Tune)
        _warn_outside_once("report", None)
        return
    decision = session.report(metrics, checkpoint)
    if decision != CONTINUE:
        raise TrialInterrupted(decision)


_warned_outside: set = set()


def get_checkpoint():
    """The checkpoint to resume from: None on a fresh start; the trial's latest persisted
    checkpoint after a retry, a pause, or once the trial has reported one.

    Outside a trial it returns None and warns once, as Ray Tune's does."""
    session = _current()
    if session is None:
        _warn_outside_once("get_checkpoint", None)
        return None
    return session.latest_checkpoint


def _warn_outside_once(api: str, returned: Any) -> None:
    """Ray Tune's warning (``_warn_session_misuse``) for an API called outside a trial."""
    import warnings

    if api not in _warned_outside:
        _warned_outside.add(api)
        warnings.warn(f"`{api}` is meant to only be called inside a function that is executed "
                      f"by a Tuner or Trainer. Returning `{returned}`.", UserWarning, stacklevel=3)


class TuneContext:
    """Information about the running trial (``tune.get_context()``)."""

    def __init__(self, session: Optional[TrialSession]):
        self._session = session

    def _spec(self):
        if self._session is None:
            return None
        return self._session.spec

    def get_trial_name(self) -> str:
        spec = self._spec()
        return spec.trial_name if spec else None

    def get_trial_id(self) -> str:
        spec = self._spec()
        return spec.trial_id if spec else None

    def get_trial_dir(self) -> str:
        spec = self._spec()
        return spec.trial_path if spec else None

    def get_experiment_name(self) -> str:
        spec = self._spec()
        return spec.experiment_name if spec else None

    def get_trial_resources(self) -> Dict[str, float]:
        spec = self._spec()
        return dict(spec.resources) if spec else {}

    def get_metadata(self) -> Dict[str, Any]:
        return {}

    def get_storage(self):
        """The experiment's storage location (a path or URL)."""
        spec = self._spec()
        return spec.experiment_uri if spec else None

    # In a data-parallel worker (tunelib.train) the session carries its ranks; a plain
    # Tune trial is one worker of world size 1.
    def _rank(self, name: str, default: int) -> int:
        return int(getattr(self._session, name, default))

    def get_world_size(self) -> int:
        return self._rank("world_size", 1)

    def get_world_rank(self) -> int:
        return self._rank("world_rank", 0)

    def get_local_rank(self) -> int:
        return self._rank("local_rank", 0)

    def get_local_world_size(self) -> int:
        return self._rank("local_world_size", 1)

    def get_node_rank(self) -> int:
        return self._rank("node_rank", 0)


def get_context() -> TuneContext:
    """The running trial's context: its name, id, directory, experiment name and ranks."""
    return TuneContext(_current())
