"""Turns validated arguments into a running experiment, and its results into an analysis.

``Tuner.fit()`` and ``tune.run()`` both end here. Everything a user can get wrong is
checked before a worker process starts or Prefect is contacted.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import math
import os
import sys
import time
import warnings
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence

from tunelib._callbacks import create_default_callbacks
from tunelib._experiment_lock import hold_experiment_dir
from tunelib._experiment_log import ExperimentLog
from tunelib._interrupts import StopSignals
from tunelib._layout import DEFAULT_STORAGE_PATH
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from tunelib.controller import CANCELLED_REASON, Controller, ExperimentSpec
from tunelib.executor._trial_dir import log_file_names
from tunelib.recording import NullRecorder

logger = logging.getLogger("tunelib")

# how long the records may take to reach Prefect (fit() itself waits TUNELIB_RECORD_WAIT_S,
# then a background process goes on; a server that stops answering ends it in seconds)
RECORD_DRAIN_TIMEOUT_S = float(os.environ.get("TUNELIB_RECORD_DRAIN_TIMEOUT_S", "3600"))
# how an interrupted experiment is continued, per entry point (Ray's hints)
TUNER_RESTORE_CALL = 'Tuner.restore(path="{path}", trainable=...)'
TUNE_RUN_RESUME_CALL = "tune.run(..., resume=True)"
_RESOURCE_KEYS = ("cpu", "gpu", "memory")


def trainable_name(trainable) -> str:
    inner = getattr(trainable, "_tunelib_wrapped", trainable)
    name = getattr(inner, "__name__", None) or type(inner).__name__
    return name


def _close_recorder(recorder, name: str, verbose: int, temporary_server: bool) -> None:
    """Wait for the records to reach Prefect (``recorder.close``: at most
    ``TUNELIB_RECORD_WAIT_S``, then a background process finishes them), say in one warning
    what was not recorded, and (``verbose`` >= 1) where the experiment is recorded.
    ``temporary_server``: the API is one no UI outlives (tunelib's embedded server, or the
    temporary one Prefect starts for a flow when no PREFECT_API_URL is set)."""
    missing = recorder.close(RECORD_DRAIN_TIMEOUT_S)
    stats = recorder.stats
    if getattr(recorder, "detached", False):
        message = (f"Prefect recording of {name!r}: handed over to the background recorder "
                   f"(pid {recorder.pid}) at the end of the experiment")
    else:
        message = (
            f"Prefect recording of {name!r}: {stats.get('writes', 0)} writes, "
            f"{stats.get('retries_503', 0)} HTTP 503 retries, "
            f"drained {stats.get('drain_s', 0.0) or 0.0:.2f} s after the last trial"
            + (f", {stats['whole_trials']} trials written whole" if stats.get("whole_trials")
               else ""))
    logger.info(message)
    if os.environ.get("TUNELIB_PREFECT_STATS") == "1":
        print(message, file=sys.stderr)
    if missing:
        warnings.warn(
            f"Prefect has not recorded everything of experiment {name!r}: "
            + "; ".join(missing[:20])
            + (f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""),
            RuntimeWarning,
            stacklevel=4,
        )
    if verbose < 1:
        return
    context = recorder.run_context(None)
    if context is not None:
        from tunelib.prefect._where import where_to_look

        print(where_to_look(context.api_url, context.flow_run_id,
                            embedded=temporary_server or bool(getattr(recorder, "embedded", 0)),
                            prefect_home=os.environ.get("PREFECT_HOME", "")))
    elif getattr(recorder, "detached", False):  # its server had not answered yet
        from tunelib.prefect._where import where_to_look_later

        print(where_to_look_later(name, os.environ.get("PREFECT_API_URL"),
                                  os.environ.get("PREFECT_HOME", "")))


def _cancelled(controller_ref: "weakref.ref", trial_id: Optional[str]) -> None:
    """Prefect's Cancel of the experiment's run (``trial_id`` None: as Ctrl-C) or of one
    trial's run, while the experiment runs."""
    controller = controller_ref()
    if controller is None:   # it has ended
        return
    if trial_id is None:
        controller.request_stop(CANCELLED_REASON)
    else:
        controller.request_trial_stop(trial_id)


def _check_trainable(trainable) -> bytes:
    from tunelib.trainable import Trainable

    if trainable is None:
        raise TypeError("`trainable` is required: pass a function `fn(config)` or a tune.Trainable "
                        "subclass.")
    if isinstance(trainable, str):
        from tunelib.registry import get_trainable

        trainable = get_trainable(trainable)
    if isinstance(trainable, type):
        if not issubclass(trainable, Trainable):
            raise TypeError(
                f"`trainable` class {trainable.__name__} must subclass tune.Trainable."
            )
    elif callable(trainable):
        try:
            inspect.signature(trainable).bind({})
        except TypeError:
            raise TypeError(
                f"`trainable` function {trainable_name(trainable)} must accept the config dict as "
                f"its one positional argument, e.g. `def {trainable_name(trainable)}(config):`; "
                f"its signature is {inspect.signature(trainable)}."
            ) from None
        except ValueError:
            pass  # builtins without a signature: let them fail at run time
    else:
        raise TypeError(
            "`trainable` must be a function `fn(config)` or a tune.Trainable subclass, "
            f"got {type(trainable).__name__}."
        )
    import cloudpickle

    try:
        return cloudpickle.dumps(trainable)
    except Exception as exc:
        raise TypeError(
            f"`trainable` {trainable_name(trainable)} cannot be pickled, so it cannot be sent to "
            f"worker processes: {exc}. Objects it captures (open files, locks, clients) must be "
            "created inside the trainable, or passed with tune.with_parameters()."
        ) from exc


def _resources(resources_per_trial, trainable) -> Dict[str, float]:
    resources = resources_per_trial
    if resources is None:
        resources = getattr(trainable, "_tunelib_resources", None)
    if resources is None:
        return {"cpu": 1.0}
    if hasattr(resources, "bundles"):  # a PlacementGroupFactory: add its bundles up
        total: Dict[str, float] = {}
        for bundle in resources.bundles:
            for key, value in bundle.items():
                total[key.lower()] = total.get(key.lower(), 0.0) + float(value)
        resources = total
    if not isinstance(resources, dict):
        raise TypeError(
            "`resources_per_trial` must be a dict such as {'cpu': 1, 'gpu': 0}, "
            f"got {type(resources).__name__}."
        )
    out: Dict[str, float] = {}
    for key, value in resources.items():
        name = str(key).lower()
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"`resources_per_trial[{key!r}]` must be a non-negative number, got {value!r}."
            )
        out[name] = float(value)
    out.setdefault("cpu", 1.0)
    return out


def _detect_gpus() -> list:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def _concurrency(resources: Dict[str, float], max_concurrent: Optional[int],
                 total_samples: Optional[int], gpus: list) -> int:
    cpus = os.cpu_count() or 1
    limit = math.inf
    if resources.get("cpu", 0) > 0:
        limit = max(1, int(cpus // resources["cpu"])) if resources["cpu"] <= cpus else 0
        if limit == 0:
            raise ValueError(
                f"`resources_per_trial` asks for {resources['cpu']:g} CPUs per trial but this "
                f"machine has {cpus}."
            )
    gpu = resources.get("gpu", 0)
    if gpu > 0:
        if not gpus:
            raise ValueError(
                f"`resources_per_trial` asks for {gpu:g} GPU(s) per trial but no GPU is visible "
                "(nvidia-smi found none and CUDA_VISIBLE_DEVICES is not set)."
            )
        limit = min(limit, int(len(gpus) // gpu))
        if limit == 0:
            raise ValueError(
                f"`resources_per_trial` asks for {gpu:g} GPUs per trial but only {len(gpus)} "
                "are visible."
            )
    if limit is math.inf:
        limit = cpus
    if max_concurrent:
        limit = min(limit, max_concurrent)
    if total_samples:
        limit = min(limit, total_samples)
    return max(1, int(limit))


def storage_root(run_config: RunConfig):
    """The filesystem and root path that ``storage_path`` (or its defaults) names."""
    from tunelib import storage

    storage_path = run_config.storage_path or os.environ.get("TUNE_RESULT_DIR") or DEFAULT_STORAGE_PATH
    if run_config.storage_filesystem is None and "://" not in str(storage_path):
        storage_path = os.path.abspath(os.path.expanduser(str(storage_path)))
    try:
        return storage.get_fs_and_path(storage_path, run_config.storage_filesystem)
    except Exception as exc:
        raise ValueError(f"`storage_path` {storage_path!r} cannot be used: {exc}") from exc


def _experiment_storage(run_config: RunConfig, name: str):
    from tunelib import storage

    fs, root = storage_root(run_config)
    experiment_path = storage.join(root, name)
    try:
        storage.write_text(fs, storage.join(experiment_path, ".validate_storage_marker"), "")
    except Exception as exc:
        raise ValueError(
            f"`storage_path` {run_config.storage_path!r} is not writable: cannot create "
            f"{storage.fs_uri(fs, experiment_path)!r} ({exc})."
        ) from exc
    return fs, experiment_path, storage.fs_uri(fs, experiment_path)


def _verbosity(verbose) -> int:
    if verbose is None:
        return 3  # Ray's default with its CLIReporter: status tables and every result
    try:
        return int(verbose)
    except (TypeError, ValueError):
        raise ValueError(f"`verbose` must be an integer 0-3, got {verbose!r}.") from None


def _export_formats(export_formats) -> List[str]:
    """``tune.run(export_formats=...)``: a format or a list of them (Ray checks no names:
    they are passed on to ``Trainable._export_model``)."""
    if not export_formats:
        return []
    formats = [export_formats] if isinstance(export_formats, str) else list(export_formats)
    for value in formats:
        if not isinstance(value, str):
            raise TypeError(f"`export_formats` must be a list of format names such as "
                            f"['model'], got {export_formats!r}.")
    return formats


def run_experiment(
    trainable,
    *,
    param_space: Optional[Dict[str, Any]],
    tune_config: TuneConfig,
    run_config: RunConfig,
    resources_per_trial=None,
    resume=None,
    export_formats: Optional[Sequence[str]] = None,
    restore_path: Optional[str] = None,
    before_start: Optional[Callable[[Any, str], None]] = None,
    restore_call: str = TUNER_RESTORE_CALL,
):
    """Run an experiment end to end and return its ``ExperimentAnalysis``.

    With ``resume`` (a ``tunelib.resume.ResumePolicy``), the experiment named by
    ``run_config`` continues: its saved trials are restored and the search goes on.
    ``before_start(fs, experiment_path)`` runs once the experiment dir is this driver's
    (``tuner.pkl`` is written there). A stop signal ends the experiment resumably (see
    ``tunelib._interrupts``); the hint printed then names ``restore_call``.
    """
    from tunelib import storage
    from tunelib.analysis import load_experiment
    from tunelib.prefect import create_recorder
    from tunelib.prefect._caller import caller_run
    from tunelib.prefect.server import configured_api_url  # imports Prefect only when called
    from tunelib.schedulers import FIFOScheduler
    from tunelib.search import as_search_algorithm
    from tunelib.stopper import as_stopper

    if param_space is not None and not isinstance(param_space, dict):
        raise TypeError(f"`param_space` must be a dict, got {type(param_space).__name__}.")
    param_space = dict(param_space or {})
    from tunelib import _pickling

    _pickling.check_picklable(param_space, "param_space")  # names the key of a lock, a file...
    registered_name = None
    if isinstance(trainable, str):  # a registered name: Ray names the trials after it
        from tunelib.registry import get_trainable

        registered_name, trainable = trainable, get_trainable(trainable)
    if hasattr(trainable, "as_trainable") and not isinstance(trainable, type):
        trainable = trainable.as_trainable()  # a Trainer (Ray Train): one trial = one run
    payload = _check_trainable(trainable)
    name_of_trainable = registered_name or trainable_name(trainable)
    metric, mode = tune_config.metric, tune_config.mode
    failure_config: FailureConfig = run_config.failure_config
    checkpoint_config: CheckpointConfig = run_config.checkpoint_config

    search_alg = as_search_algorithm(tune_config.search_alg, tune_config.max_concurrent_trials)
    search_alg.set_search_properties(metric, mode, param_space)
    search_alg.add_configurations(param_space, tune_config.num_samples)
    scheduler = tune_config.scheduler or FIFOScheduler()
    if hasattr(scheduler, "set_search_properties"):
        if not scheduler.set_search_properties(metric, mode):
            raise ValueError(
                "The scheduler's metric/mode conflict with TuneConfig(metric, mode): set them in "
                "one place only."
            )
    stopper = as_stopper(run_config.stop)
    resources = _resources(resources_per_trial, trainable)
    gpus = _detect_gpus() if resources.get("gpu", 0) > 0 else []
    total = search_alg.total_samples
    workers = _concurrency(resources, tune_config.max_concurrent_trials, total, gpus)
    # the user's callbacks, the reporter and the default loggers (a bad reporter fails here)
    callbacks = create_default_callbacks(
        run_config.callbacks, progress_reporter=run_config.progress_reporter,
        verbose=_verbosity(run_config.verbose), metric=metric, mode=mode, stop=run_config.stop,
        fail_fast=failure_config.fail_fast, scheduler=scheduler,
        total_resources=None if run_config.executor else (os.cpu_count() or 1, len(gpus)))

    name = run_config.name or f"{name_of_trainable}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    fs, experiment_path, experiment_uri = _experiment_storage(run_config, name)
    # before anything is read or written there: a second driver fails here, at once
    lock = hold_experiment_dir(fs, experiment_path, experiment_uri)
    try:
        restored, id_prefix = [], None
        if resume is not None:
            from tunelib.resume import load_trials

            restored, id_prefix = load_trials(fs, experiment_path, resume)
            if storage.is_local(fs) and search_alg.has_checkpoint(experiment_path):
                search_alg.restore_from_dir(experiment_path)  # configs tried stay tried
        if before_start is not None:
            before_start(fs, experiment_path)
    except BaseException:
        lock.release()
        raise
    key = hashlib.sha1(payload).hexdigest()[:16]
    spec = ExperimentSpec(
        name=name,
        trainable_name=name_of_trainable,
        trainable_key=key,
        # absolute: trials run in their own working directories
        experiment_path=os.path.abspath(experiment_path) if storage.is_local(fs) else experiment_path,
        experiment_uri=experiment_uri,
        fs=fs,
        storage_filesystem=fs if run_config.storage_filesystem is not None else None,
        param_space=param_space,
        num_samples=tune_config.num_samples,
        metric=metric,
        mode=mode,
        checkpoint_config=checkpoint_config,
        max_failures=failure_config.max_failures,
        fail_fast=failure_config.fail_fast,
        time_budget_s=tune_config.time_budget_seconds,
        max_concurrent=workers,
        resources=resources,
        reuse_actors=tune_config.reuse_actors,
        trial_name_creator=tune_config.trial_name_creator,
        trial_dirname_creator=tune_config.trial_dirname_creator,
        verbose=_verbosity(run_config.verbose),
        log_to_file=log_file_names(run_config.log_to_file),
        export_formats=_export_formats(export_formats),
        restore_path=restore_path,
    )

    caller = caller_run()
    recorder = create_recorder(enabled=os.environ.get("TUNELIB_DISABLE_PREFECT", "0") != "1",
                               caller=caller,
                               # the workers executor imports Prefect on this thread: import
                               # it here first, not at the same time as the recorder's thread
                               import_here=run_config.executor is not None)
    try:
        if run_config.executor is not None:
            executor = run_config.executor.create_executor(spec=spec, num_workers=workers,
                                                           payload=payload, recorder=recorder)
        else:
            from tunelib.executor.local import LocalExecutor

            executor = LocalExecutor(workers, gpus_per_worker=resources.get("gpu", 0),
                                     gpu_ids=gpus, storage_fs=fs,
                                     experiment_path=experiment_path, recorder=recorder)
    except BaseException:
        recorder.close(0)
        lock.release()
        raise
    executor.register_trainable(key, payload)
    if not isinstance(recorder, NullRecorder):  # its lines go nowhere otherwise
        callbacks.callbacks.append(ExperimentLog(recorder, metric=metric, mode=mode))
    controller = Controller(spec, executor, recorder, search_alg, scheduler, stopper,
                            callbacks=callbacks, restored_trials=restored,
                            id_prefix=id_prefix)
    # Prefect's Cancel: of the experiment's run, as Ctrl-C; of a trial's run, that trial
    # (by a weak reference: a recorder draining after fit() must not hold every trial)
    recorder.watch_cancel(functools.partial(_cancelled, weakref.ref(controller)))
    stop_signals = StopSignals(controller.request_stop)
    try:
        try:
            with stop_signals:
                executor.start()
                controller.run()
        finally:  # also when an exception ends it (a second Ctrl-C, Prefect's Cancel)
            if controller.interrupted is not None:
                # one line, once the state is saved (draining the records may take a while)
                logger.warning(
                    "Experiment has been interrupted (%s), but the most recent state was "
                    "saved. Resume experiment with: %s", controller.interrupted,
                    restore_call.format(path=experiment_uri))
    finally:
        executor.shutdown()
        _close_recorder(recorder, name, spec.verbose,
                        temporary_server=caller is not None and configured_api_url() is None)
        lock.release()
    stop_signals.pass_on()  # SIGTERM: now that everything is saved, as if we had not caught it
    # the experiment's trials as the run held them are not needed to read it back
    del controller, stop_signals, executor, callbacks, restored
    analysis = load_experiment(
        experiment_uri if run_config.storage_filesystem is None else experiment_path,
        storage_filesystem=fs if run_config.storage_filesystem is not None else None,
        default_metric=metric,
        default_mode=mode,
    )
    analysis._keep_readback()   # the next read of this experiment: one file
    return analysis
