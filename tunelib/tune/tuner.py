"""``tune.Tuner``: configure an experiment, ``fit()`` it, get a ``ResultGrid`` back."""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Dict, Optional

import cloudpickle

from tunelib._validation import check_keywords
from tunelib.config import RunConfig, TuneConfig

_TUNER_FILE = "tuner.pkl"


class Tuner:
    """Tune a trainable over a parameter space (Ray's ``ray.tune.Tuner``).

    Example::

        tuner = tune.Tuner(
            train_fn,
            param_space={"lr": tune.loguniform(1e-4, 1e-1)},
            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8),
            run_config=tune.RunConfig(name="exp", storage_path="/tmp/results"),
        )
        grid = tuner.fit()
        print(grid.get_best_result().config)
    """

    @check_keywords
    def __init__(
        self,
        trainable=None,
        *,
        param_space: Optional[Dict[str, Any]] = None,
        tune_config: Optional[TuneConfig] = None,
        run_config: Optional[RunConfig] = None,
        _tuner_kwargs: Optional[Dict] = None,
        _tuner_internal=None,
        _entrypoint=None,
    ):
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(
                f"`tune_config` must be a tune.TuneConfig, got {type(tune_config).__name__}."
            )
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"`run_config` must be a tune.RunConfig, got {type(run_config).__name__}.")
        if param_space is not None and not isinstance(param_space, dict):
            raise TypeError(f"`param_space` must be a dict, got {type(param_space).__name__}.")
        self._trainable = trainable
        self._param_space = param_space
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._restored_path: Optional[str] = None
        self._restored_fs = None
        self._resume = None
        self._results = None

    def fit(self):
        """Run the experiment; returns a ``ResultGrid`` with one ``Result`` per trial.

        Trials that fail after their retries do not raise: their ``Result.error`` holds the
        exception and ``ResultGrid.errors`` lists them.
        """
        from tunelib.result_grid import ResultGrid
        from tunelib.runner import run_experiment

        run_config = self._run_config
        if self._restored_path is not None:
            if self._trainable is None:
                raise ValueError(
                    "Tuner.restore(path, trainable=...) needs the trainable to continue the "
                    "experiment (get_results() alone does not)."
                )
            # the experiment lives where it was restored from, whatever tuner.pkl says
            parent, _, name = self._restored_path.rstrip("/").rpartition("/")
            run_config = dataclasses.replace(run_config, name=name, storage_path=parent or ".",
                                             storage_filesystem=self._restored_fs)
            _import_ray_search_state(self._restored_path, self._restored_fs)
        analysis = run_experiment(
            self._trainable,
            param_space=self._param_space,
            tune_config=self._tune_config,
            run_config=run_config,
            resume=self._resume,
            # as Ray, when the experiment starts: a restore after a crash knows its configs
            before_start=self._write_tuner_file,
        )
        self._results = ResultGrid(analysis)
        return self._results

    def _write_tuner_file(self, fs, experiment_path: str) -> None:
        """What ``Tuner.restore`` needs: the param space and configs (not the trainable),
        written into the experiment dir before its first trial starts.

        A failure (configs holding objects cloudpickle cannot pickle, storage refusing the
        write) warns instead of raising: the experiment itself can run.
        """
        from tunelib import storage

        target = storage.join(experiment_path, _TUNER_FILE)
        shown = storage.fs_uri(fs, target)  # as the user wrote it: s3://bucket/...
        try:
            data = cloudpickle.dumps({
                "param_space": self._param_space,
                "tune_config": self._tune_config,
                "run_config": self._run_config,
            })
            storage.write_bytes(fs, target, data)
        except Exception as exc:
            warnings.warn(
                f"Could not write {shown!r} ({type(exc).__name__}: {exc}). The experiment "
                "runs, but Tuner.restore() of it will not know its param_space (pass it "
                "again) and will use default TuneConfig/RunConfig values.",
                RuntimeWarning,
                stacklevel=4,  # _write_tuner_file <- run_experiment <- fit <- the user's call
            )

    def get_results(self):
        """The ``ResultGrid`` of the last ``fit()``, or of the experiment this Tuner was
        restored from."""
        from tunelib.analysis import ExperimentAnalysis
        from tunelib.result_grid import ResultGrid

        if self._results is not None:
            return self._results
        if self._restored_path is None:
            raise RuntimeError("No results yet: call fit() first, or use Tuner.restore(path).")
        analysis = ExperimentAnalysis(
            self._restored_path,
            storage_filesystem=self._restored_fs,
            default_metric=self._tune_config.metric,
            default_mode=self._tune_config.mode,
        )
        return ResultGrid(analysis)

    @classmethod
    def restore(
        cls,
        path: str,
        trainable=None,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: Optional[Dict[str, Any]] = None,
        storage_filesystem=None,
        _resume_config=None,
    ) -> "Tuner":
        """Open an existing experiment directory (local path or URL).

        ``get_results()`` reads it; ``fit()`` continues it: unfinished trials resume from
        their latest checkpoint, finished ones are kept, errored ones are skipped (or
        resumed with ``resume_errored``, or started over with ``restart_errored``), and the
        search continues where it stopped.
        """
        from tunelib import storage

        if not cls.can_restore(path, storage_filesystem):
            raise ValueError(
                f"`path` {str(path)!r} is not an experiment directory: no experiment_state-*.json "
                "or tuner.pkl found there."
            )
        fs, fs_path = storage.get_fs_and_path(path, storage_filesystem)
        saved = _read_tuner_file(fs, fs_path)
        if param_space is None and saved.get("param_space") is None and saved.get("ray"):
            param_space = _ray_param_space(fs, fs_path)
        tuner = cls(
            trainable,
            param_space=param_space if param_space is not None else saved.get("param_space"),
            tune_config=saved.get("tune_config"),
            run_config=saved.get("run_config"),
        )
        from tunelib.resume import ResumePolicy

        tuner._restored_path = str(path)
        tuner._restored_fs = storage_filesystem
        if _resume_config is not None:
            tuner._resume = ResumePolicy(_resume_config.finished, _resume_config.unfinished,
                                         _resume_config.errored)
        else:
            tuner._resume = ResumePolicy.from_tuner_flags(resume_unfinished, resume_errored,
                                                          restart_errored)
        return tuner

    @classmethod
    def can_restore(cls, path, storage_filesystem=None) -> bool:
        """True when ``path`` holds an experiment (state file or tuner.pkl)."""
        from tunelib import storage

        try:
            fs, fs_path = storage.get_fs_and_path(os.fspath(path), storage_filesystem)
            names = storage.list_dir(fs, fs_path)
        except Exception:
            return False
        return any(n.startswith("experiment_state-") or n == _TUNER_FILE for n in names)


def _read_tuner_file(fs, experiment_path: str) -> Dict[str, Any]:
    """What the experiment's ``tuner.pkl`` says: tunelib's own dict, or the configs of a
    Ray-written one, read without Ray (``_ray_compat``; its ``"ray"`` key is True then).
    ``{}`` when there is none; a file that cannot be read warns and gives ``{}`` too."""
    from tunelib import _ray_compat, storage

    path = storage.join(experiment_path, _TUNER_FILE)
    if not storage.exists(fs, path):
        return {}
    try:
        saved = _ray_compat.loads(storage.read_bytes(fs, path))
    except Exception as exc:  # noqa: BLE001 - a module missing here, a damaged file
        warnings.warn(
            f"Could not read {storage.fs_uri(fs, path)!r} ({type(exc).__name__}: {exc}); the "
            "restored Tuner uses default TuneConfig/RunConfig values and no param_space "
            "(pass param_space= to Tuner.restore).",
            RuntimeWarning, stacklevel=3,
        )
        return {}
    from_ray = _ray_compat.tuner_state_from_ray(saved)
    if from_ray is not None:
        return {**from_ray, "ray": True}
    return saved if isinstance(saved, dict) else {}


def _ray_param_space(fs, experiment_path: str) -> Optional[Dict[str, Any]]:
    """A Ray experiment's param space: Ray's tuner.pkl leaves it out, its variant
    generator's state has it (None when that cannot be read)."""
    from tunelib import _ray_compat

    try:
        ray_state = _ray_compat.read_search_state(fs, experiment_path)
    except ValueError:  # a Ray searcher's state: fit() says so, get_results() needs none
        return None
    return ray_state.param_space if ray_state is not None else None


def _import_ray_search_state(path: str, storage_filesystem) -> None:
    """Before tunelib continues a Ray experiment: Ray's variant generator state, made
    tunelib's, beside Ray's (its runs are continued, not repeated)."""
    from tunelib import _ray_compat, storage

    fs, fs_path = storage.get_fs_and_path(path, storage_filesystem)
    if storage.is_local(fs):  # as tunelib's own search state, which is kept on local disk
        _ray_compat.import_search_state(fs, fs_path)
