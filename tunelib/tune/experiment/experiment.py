"""``Experiment``: one experiment's specification, for ``tune.run`` and
``tune.run_experiments`` (Ray's legacy API, ``ray.tune.experiment.experiment``).

An Experiment holds what ``tune.run`` takes per experiment (trainable, config, stop,
storage, checkpoints...), validated when it is built; ``tune.run(experiment, ...)`` adds
what is experiment-wide (metric, mode, scheduler, search, callbacks). As in Ray, building
one registers its trainable under its name (``tune.run("that_name")`` then works).

Example::

    experiment = Experiment(
        "my_experiment", train_fn,
        config={"alpha": tune.grid_search([0.2, 0.4]), "beta": tune.uniform(0, 1)},
        stop={"training_iteration": 10}, num_samples=2, storage_path="/tmp/results",
    )
    trials = tune.run_experiments(experiment)        # a list of Trial
    analysis = tune.run(experiment, metric="loss", mode="min")
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import pprint
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tunelib import storage
from tunelib._validation import check_class_keywords
from tunelib.config import CheckpointConfig, RunConfig
from tunelib.error import TuneError
from tunelib.executor._trial_dir import log_file_names
from tunelib.stopper import CombinedStopper, Stopper, TimeoutStopper, as_stopper
from tunelib.trial import StorageContext, Trial

logger = logging.getLogger(__name__)

__all__ = ["Experiment", "_convert_to_experiment_list"]


def _is_function_trainable(run: Any) -> bool:
    from tunelib.registry import get_trainable, is_registered

    if isinstance(run, str):
        if not is_registered(run):
            return False
        run = get_trainable(run)
    return not isinstance(run, type) and callable(run)


@check_class_keywords
class Experiment:
    """Tracks an experiment's specification (Ray's ``ray.tune.Experiment``).

    Args: as ``tune.run``'s arguments of the same names; ``name`` is the experiment's
    directory under ``storage_path`` (default: ``<trainable>_<date>``), ``run`` the
    trainable (a function, a ``tune.Trainable`` subclass, or a registered name).

    Raises:
        ValueError: a function trainable with ``checkpoint_frequency`` or
            ``checkpoint_at_end`` (it reports its checkpoints itself), a ``config`` that
            is not a dict, a bad ``stop`` or ``log_to_file``.
    """

    # the keys of ``spec`` that searchers, schedulers and callbacks may see
    PUBLIC_KEYS = {"stop", "num_samples", "time_budget_s"}

    def __init__(
        self,
        name: str,
        run: Union[str, Callable, type],
        *,
        stop: Union[Mapping, Stopper, Callable[[str, Mapping], bool], None] = None,
        time_budget_s: Union[int, float, datetime.timedelta, None] = None,
        config: Optional[Dict[str, Any]] = None,
        resources_per_trial: Union[None, Mapping[str, Union[float, int, Mapping]], Any] = None,
        num_samples: int = 1,
        storage_path: Optional[str] = None,
        storage_filesystem: Optional[Any] = None,
        sync_config: Union[Any, dict, None] = None,
        checkpoint_config: Union[CheckpointConfig, dict, None] = None,
        trial_name_creator: Optional[Callable[[Trial], str]] = None,
        trial_dirname_creator: Optional[Callable[[Trial], str]] = None,
        log_to_file: bool = False,
        export_formats: Optional[Sequence] = None,
        max_failures: int = 0,
        restore: Optional[str] = None,
        local_dir: Optional[str] = None,
    ):
        if isinstance(checkpoint_config, dict):
            checkpoint_config = CheckpointConfig(**checkpoint_config)
        checkpoint_config = checkpoint_config or CheckpointConfig()
        if _is_function_trainable(run):
            if checkpoint_config.checkpoint_at_end:
                raise ValueError(
                    "'checkpoint_at_end' cannot be used with a function trainable. You should "
                    "include one last call to `tune.report(metrics=..., checkpoint=...)` at "
                    "the end of your training loop to get this behavior."
                )
            if checkpoint_config.checkpoint_frequency:
                raise ValueError(
                    "'checkpoint_frequency' cannot be set for a function trainable. You will "
                    "need to report a checkpoint every `checkpoint_frequency` iterations "
                    "within your training loop using `tune.report(metrics=..., "
                    "checkpoint=...)` to get this behavior."
                )
        self._run = run
        self._run_identifier = Experiment.register_if_needed(run)
        if not name:
            from tunelib.tune.utils import date_str

            dated = not int(os.environ.get("TUNE_DISABLE_DATED_SUBDIR", "0"))
            name = f"{self._run_identifier}_{date_str()}" if dated else self._run_identifier
        config = config or {}
        if not isinstance(config, dict):
            raise ValueError(
                f"`Experiment(config)` must be a dict, got: {type(config)}. Please convert "
                "your search space to a dict before passing it in."
            )
        self._stop = stop
        self._stopper = self._make_stopper(stop, time_budget_s)
        self._run_config = RunConfig(name=name, storage_path=storage_path or local_dir,
                                     storage_filesystem=storage_filesystem)
        self._sync_config = sync_config
        self.spec: Dict[str, Any] = {
            "run": self._run_identifier,
            "stop": dict(stop) if isinstance(stop, Mapping) else {},
            "time_budget_s": time_budget_s,
            "config": config,
            "resources_per_trial": resources_per_trial,
            "num_samples": num_samples,
            "checkpoint_config": checkpoint_config,
            "trial_name_creator": trial_name_creator,
            "trial_dirname_creator": trial_dirname_creator,
            "log_to_file": log_file_names(log_to_file),
            "export_formats": list(export_formats or []),
            "max_failures": max_failures,
            "restore": Path(restore).expanduser().absolute().as_posix() if restore else None,
            "storage": self.storage,
        }
        self._log_to_file = log_to_file

    @staticmethod
    def _make_stopper(stop, time_budget_s) -> Optional[Stopper]:
        """Ray's ``Experiment.stopper``: the non-dict part of ``stop`` with the time budget."""
        stopper = as_stopper(stop)  # validates every form of ``stop``
        if isinstance(stop, Mapping):
            stopper = None
        if time_budget_s:
            budget = TimeoutStopper(time_budget_s)
            stopper = CombinedStopper(stopper, budget) if stopper else budget
        return stopper

    @classmethod
    def from_json(cls, name: str, spec: dict) -> "Experiment":
        """An Experiment from the dict form ``{"run": trainable, "config": ..., ...}``.

        Example::

            Experiment.from_json("exp", {"run": train_fn, "stop": {"training_iteration": 2}})
        """
        if "run" not in spec:
            raise TuneError("No trainable specified!")
        spec = dict(spec)
        if "env" in spec:  # RLlib's spelling: the env goes into the config
            spec["config"] = dict(spec.get("config", {}), env=spec.pop("env"))
        if isinstance(spec.get("sync_config"), dict):
            from tunelib.tune import SyncConfig

            spec["sync_config"] = SyncConfig(**spec["sync_config"])
        spec = copy.deepcopy(spec)
        run_value = spec.pop("run")
        try:
            return cls(name, run_value, **spec)
        except TypeError as exc:
            raise TuneError(
                f"Failed to load the following Tune experiment specification:\n\n "
                f"{pprint.pformat(spec)}.\n\nPlease check that the arguments are valid. "
                f"Experiment creation failed with the following error:\n {exc}"
            ) from None

    @classmethod
    def get_trainable_name(cls, run_object: Union[str, Callable, type]) -> str:
        """The name a trainable is known by: the string itself, or the function's or
        class's name ("lambda" for a lambda, a partial's function name)."""
        if isinstance(run_object, str):
            return run_object
        if isinstance(run_object, type) or callable(run_object):
            if hasattr(run_object, "_name"):
                return run_object._name
            inner = getattr(run_object, "_tunelib_wrapped", run_object)
            if hasattr(inner, "__name__"):
                fn_name = inner.__name__
                if fn_name == "<lambda>":
                    return "lambda"
                return "DEFAULT" if fn_name.startswith("<") else fn_name
            if isinstance(run_object, partial) and hasattr(run_object.func, "__name__"):
                return run_object.func.__name__
            logger.warning("No name detected on trainable. Using DEFAULT.")
            return "DEFAULT"
        raise TuneError("Improper 'run' - not string nor trainable.")

    @classmethod
    def register_if_needed(cls, run_object: Union[str, Callable, type]) -> str:
        """Register ``run_object`` under its name (a string is taken as registered)."""
        from tunelib.registry import register_trainable

        if isinstance(run_object, str):
            return run_object
        name = cls.get_trainable_name(run_object)
        register_trainable(name, run_object)
        return name

    # ------------------------------------------------------------------ Ray's properties
    @property
    def stopper(self) -> Optional[Stopper]:
        return self._stopper

    @property
    def storage(self) -> StorageContext:
        """Where the experiment's directory is (``storage_path/name``)."""
        from tunelib.runner import storage_root

        fs, root = storage_root(self._run_config)
        return StorageContext(fs, storage.join(root, self._run_config.name))

    @property
    def remote_path(self) -> str:
        return self.storage.experiment_fs_path

    @property
    def local_path(self) -> Optional[str]:
        """The experiment directory on local disk (None for remote storage)."""
        return self.storage.experiment_driver_staging_path

    @property
    def path(self) -> str:
        return self.remote_path or self.local_path

    @property
    def local_dir(self):
        """Removed in Ray (it raises there too)."""
        raise DeprecationWarning("Use `local_path` instead of `local_dir`.")

    @property
    def checkpoint_dir(self):
        """Removed in Ray (it raises there too)."""
        raise DeprecationWarning("Use `local_path` instead of `checkpoint_dir`.")

    @property
    def checkpoint_config(self) -> CheckpointConfig:
        return self.spec["checkpoint_config"]

    @property
    def run_identifier(self) -> str:
        """The name the trainable is registered under."""
        return self._run_identifier

    @property
    def public_spec(self) -> Dict[str, Any]:
        """The part of ``spec`` searchers, schedulers and callbacks see."""
        return {k: v for k, v in self.spec.items() if k in self.PUBLIC_KEYS}

    def _tune_run_arguments(self) -> Tuple[Union[str, Callable, type], Dict[str, Any]]:
        """What ``tune.run`` is called with to run this experiment: the trainable as given
        (its registered name is ``run_identifier``) and the keyword arguments."""
        spec = self.spec
        return self._run, dict(
            name=self._run_config.name, stop=self._stop, time_budget_s=spec["time_budget_s"],
            config=spec["config"], resources_per_trial=spec["resources_per_trial"],
            num_samples=spec["num_samples"], storage_path=self._run_config.storage_path,
            storage_filesystem=self._run_config.storage_filesystem,
            sync_config=self._sync_config, checkpoint_config=spec["checkpoint_config"],
            trial_name_creator=spec["trial_name_creator"],
            trial_dirname_creator=spec["trial_dirname_creator"], log_to_file=self._log_to_file,
            export_formats=spec["export_formats"] or None, max_failures=spec["max_failures"],
            restore=spec["restore"],
        )

    def __repr__(self) -> str:
        return f"Experiment(name={self._run_config.name!r}, run={self._run_identifier!r})"


def _convert_to_experiment_list(
    experiments: Union[Experiment, List[Experiment], Dict, None]
) -> List[Experiment]:
    """An Experiment, a list of them, or ``{name: spec dict}`` as a list of Experiments.

    Example::

        _convert_to_experiment_list({"exp": {"run": train_fn}})   # [Experiment(...)]
    """
    exp_list = experiments
    if experiments is None:
        exp_list = []
    elif isinstance(experiments, Experiment):
        exp_list = [experiments]
    elif isinstance(experiments, dict):
        exp_list = [Experiment.from_json(name, spec) for name, spec in experiments.items()]
    if not (isinstance(exp_list, list) and all(isinstance(e, Experiment) for e in exp_list)):
        raise TuneError(f"Invalid argument: {experiments}")
    return exp_list

