"""Ray's ``TBXLoggerCallback``: TensorBoard event files in each trial's directory.

As Ray writes them (the ``tensorboard`` extra, ``pip install 'tunelib[tensorboard]'``):
``events.out.tfevents.<time>.<host>`` per trial attempt, every numeric result under
``ray/tune/<key>`` (nested keys joined with ``/``; ``config``, ``pid``, ``timestamp``,
``time_total_s`` and ``training_iteration`` left out) at step ``timesteps_total`` or
``training_iteration``, arrays as images, videos or histograms, and the searched
parameters as hparams (with the last scalars as metrics) when the trial ends. With
tensorboardX installed it is one of the default callbacks (unless
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``). On remote storage (``s3://``...) the events go
to a local directory first and are uploaded into the trial's directory when the trial
(or the experiment) ends.

Unlike Ray, the experiment loop never waits for it: the events are written by one
background thread, which ``on_experiment_end`` waits for. Importing tensorboardX imports
torch when that is installed (1.3 s here, for a type annotation): the thread imports it
with torch hidden from itself (``_import_summary``). tensorboardX's ``SummaryWriter`` runs two threads per file and fsyncs on each flush
(3 ms; 18 ms per trial and 1.4 ms per result in the loop). So the thread imports
tensorboardX while the first trials start, and writes tensorboardX's records straight to
the file, flushed to the OS after each result (TensorBoard sees them live), not fsynced.

Example::

    from tunelib.tune.logger import TBXLoggerCallback

    tune.run(train_fn, config=space, callbacks=[TBXLoggerCallback()])
    # tensorboard --logdir ~/ray_results/<experiment>
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import shutil
import socket
import struct
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np

from tunelib import _layout, storage
from tunelib._loggers import LoggerCallback

if TYPE_CHECKING:
    from tunelib.trial import Trial

logger = logging.getLogger("tunelib")

__all__ = ["TBXLoggerCallback", "tensorboardx_available"]

_EXTRA = "pip install 'tunelib[tensorboard]' (tensorboardX) to write TensorBoard files"
# result keys Ray does not log
_NOT_LOGGED = ("config", "pid", "timestamp", "time_total_s", "training_iteration")


def tensorboardx_available() -> bool:
    """Whether tensorboardX is installed (found, not imported: that is slow)."""
    return importlib.util.find_spec("tensorboardX") is not None


class _NoTorchHere:
    """A ``sys.meta_path`` finder that makes ``import torch`` fail in ONE thread (the one
    that installs it); other threads import torch as usual."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name, path=None, target=None):
        if name == "torch" and threading.get_ident() == self.thread:
            raise ModuleNotFoundError("torch is not imported for tensorboardX's summaries",
                                      name=name)
        return None


def _import_summary():
    """``tensorboardX.summary`` without importing torch, when nothing imported it yet.

    tensorboardX's package imports its ``SummaryWriter`` module, whose ``import torch``
    (1.3 s and ~300 MB here) only gives a type annotation its name; the summaries convert
    torch tensors lazily (``x2num``). So the import runs with torch hidden from this thread
    alone: a trial's result unpickled meanwhile in another thread still imports torch."""
    import sys

    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        import tensorboardX.summary

        return tensorboardX.summary
    finder = _NoTorchHere()
    sys.meta_path.insert(0, finder)
    try:
        import tensorboardX.summary
    finally:
        sys.meta_path.remove(finder)
    return tensorboardX.summary


class _EventFile:
    """One event file, ``events.out.tfevents.<time>.<host>``: tensorboardX's events and
    records, written to the file as they come (see the module docstring)."""

    def __init__(self, logdir: str):
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import masked_crc32c

        self._event, self._crc = Event, masked_crc32c
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        path, n = os.path.join(logdir, name), 0
        while os.path.exists(path):  # a second attempt within the same second
            n += 1
            path = os.path.join(logdir, f"{name}.{n}")
        self.path = path
        self._file = open(path, "wb")
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(header + struct.pack("I", self._crc(header)) + data
                         + struct.pack("I", self._crc(data)))

    def add_summary(self, summary, step: Optional[int] = None) -> None:
        event = self._event(wall_time=time.time(), summary=summary)
        if step is not None:
            event.step = int(step)
        self._write(event)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _WriterThread:
    """Runs the calls given to it in order, on one daemon thread started on demand;
    ``drain()`` returns once every call has run. A call that raises is logged."""

    def __init__(self):
        self._queue: Optional[queue.SimpleQueue] = None
        self._thread: Optional[threading.Thread] = None

    def submit(self, fn: Callable, *args: Any) -> None:
        if self._thread is None:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, args=(self._queue,),
                                            name="tunelib-tensorboard", daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @staticmethod
    def _run(calls: queue.SimpleQueue) -> None:
        while (call := calls.get()) is not None:
            fn, args = call
            try:
                fn(*args)
            except Exception:
                logger.warning("Writing TensorBoard files failed (%s).", fn.__name__,
                               exc_info=True)


class TBXLoggerCallback(LoggerCallback):
    """TensorBoard event files in each trial's directory (Ray's ``TBXLoggerCallback``;
    see the module docstring). hparams are written when the trial ends.

    Raises ImportError when tensorboardX is not installed.
    """

    _SAVED_FILE_TEMPLATES = ["events.out.tfevents.*"]
    VALID_SUMMARY_TYPES = (int, float, np.float32, np.float64, np.int32, np.int64)
    VALID_HPARAMS = (str, bool, int, float, list, type(None))
    VALID_NP_HPARAMS = (np.bool_, np.float32, np.float64, np.int32, np.int64)

    # what a run holds (open files, the thread): not pickled with the Tuner
    _RUNTIME = ("_summary", "_trial_writer", "_trial_result", "_staging", "_writes")

    def __init__(self):
        if not tensorboardx_available():
            raise ImportError(f"TBXLoggerCallback needs tensorboardX: {_EXTRA}.")
        self._start()

    def _start(self) -> None:
        self._summary = None  # tensorboardX.summary, once the writer thread imported it
        self._trial_writer: Dict["Trial", _EventFile] = {}
        self._trial_result: Dict["Trial", Dict] = {}
        # trial -> the local directory its events go to before upload (remote storage)
        self._staging: Dict["Trial", str] = {}
        self._writes = _WriterThread()
        self._writes.submit(self._import)  # while the first trials start

    def __getstate__(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._RUNTIME}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start()

    # ------------------------------------------------------------------ the loop's side
    def log_trial_start(self, trial: "Trial"):
        self._writes.submit(self._open, trial)

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict):
        self._writes.submit(self._log_result, trial, dict(result))

    def log_trial_end(self, trial: "Trial", failed: bool = False):
        self._writes.submit(self._end, trial)

    def on_experiment_end(self, trials: List["Trial"], **info):
        self._writes.submit(self._close_all)
        self._writes.drain()

    # ------------------------------------------------------------------ the writer thread
    def _import(self) -> None:
        if self._summary is None:
            self._summary = _import_summary()

    def _open(self, trial: "Trial") -> None:
        self._import()
        if trial in self._trial_writer:
            self._close(trial)
        self._trial_writer[trial] = _EventFile(self._logdir(trial))
        self._trial_result[trial] = {}

    def _logdir(self, trial: "Trial") -> str:
        """The trial's directory on local storage, else a local staging directory."""
        if trial.local_path:
            os.makedirs(trial.local_path, exist_ok=True)
            return trial.local_path
        if trial not in self._staging:
            self._staging[trial] = tempfile.mkdtemp(prefix="tunelib-tbx-")
        return self._staging[trial]

    def _log_result(self, trial: "Trial", result: Dict) -> None:
        if trial not in self._trial_writer:
            self._open(trial)
        writer = self._trial_writer[trial]
        step = result.get("timesteps_total") or result["training_iteration"]
        logged = {k: v for k, v in result.items() if k not in _NOT_LOGGED}
        valid = {}
        for key, value in _layout.flatten_dict(logged, delimiter="/").items():
            tag = f"ray/tune/{key}"
            if isinstance(value, self.VALID_SUMMARY_TYPES) and not np.isnan(value):
                valid[tag] = value
                writer.add_summary(self._summary.scalar(tag, value), step)
            elif (isinstance(value, list) and value) or (isinstance(value, np.ndarray)
                                                         and value.size > 0):
                valid[tag] = value
                self._add_array(writer, tag, value, step)
        self._trial_result[trial] = valid
        writer.flush()

    def _add_array(self, writer: _EventFile, tag: str, value, step) -> None:
        """Ray's rule: a 3-d array is an image (CHW), 4-d a batch of images (NCHW), 5-d a
        video, else a histogram."""
        ndim = value.ndim if isinstance(value, np.ndarray) else 1
        try:
            if ndim == 3:
                summary = self._summary.image(tag, value, dataformats="CHW")
            elif ndim == 4:
                summary = self._summary.image(tag, value, dataformats="NCHW")
            elif ndim == 5:
                summary = self._summary.video(tag, value, fps=20)
            else:
                summary = self._summary.histogram(tag, np.asarray(value), bins="auto")
        except (ValueError, TypeError):
            logger.warning("You are trying to log an invalid value (%s=%s) via "
                           "TBXLoggerCallback!", tag, value)
            return
        writer.add_summary(summary, step)

    def _end(self, trial: "Trial") -> None:
        if trial not in self._trial_writer:
            return
        if trial.evaluated_params and self._trial_result[trial]:
            scalars = {k: v for k, v in self._trial_result[trial].items()
                       if isinstance(v, self.VALID_SUMMARY_TYPES)}
            self._log_hparams(trial, scalars)
        self._close(trial)

    def _close_all(self) -> None:
        for trial in list(self._trial_writer):
            self._close(trial)

    def _close(self, trial: "Trial") -> None:
        self._trial_writer.pop(trial).close()
        self._trial_result.pop(trial, None)
        staging = self._staging.pop(trial, None)
        if staging is None or trial.path is None:
            return
        try:
            storage.upload_dir(staging, trial.experiment_storage.storage_filesystem, trial.path)
        except Exception:
            logger.warning("Could not upload the TensorBoard files of trial %s to %s.",
                           trial, trial.path, exc_info=True)
        shutil.rmtree(staging, ignore_errors=True)

    def _log_hparams(self, trial: "Trial", result: Dict) -> None:
        flat_params = _layout.flatten_dict(trial.evaluated_params)
        params = {k: v for k, v in flat_params.items() if isinstance(v, self.VALID_HPARAMS)}
        params.update({k: v.tolist() for k, v in flat_params.items()
                       if isinstance(v, self.VALID_NP_HPARAMS)})
        removed = {k: v for k, v in flat_params.items()
                   if not isinstance(v, self.VALID_HPARAMS + self.VALID_NP_HPARAMS)}
        if removed:
            logger.info("Removed the following hyperparameter values when logging to "
                        "tensorboard: %s", removed)
        try:
            for summary in self._summary.hparams(hparam_dict=params, metric_dict=result):
                self._trial_writer[trial].add_summary(summary)
        except Exception:
            logger.exception("TensorboardX failed to log hparams. This may be due to an "
                             "unsupported type in the hyperparameter values.")
