"""``from tunelib import tune``: Ray Tune's public API, run by Prefect.

Every name of ``ray.tune`` that an experiment script uses is here with Ray's signature,
and Ray's module paths are too, so rewriting ``ray`` to ``tunelib`` in an import works::

    from tunelib.tune.schedulers import ASHAScheduler      # is tunelib.schedulers
    from tunelib.tune.search.optuna import OptunaSearch    # is tunelib.search.optuna
    from tunelib.tune.stopper import TrialPlateauStopper
    from tunelib.tune.experiment import Experiment, Trial
    from tunelib.tune.utils import wait_for_gpu

``tune.schedulers`` and ``tune.search`` (with every submodule) are the core packages
themselves (see ``_aliases``); the other paths are thin modules here that re-export the
engine's names.
"""

from tunelib import schedulers, search
from tunelib.analysis import ExperimentAnalysis
from tunelib.checkpoint import Checkpoint
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from tunelib.error import TuneError
from tunelib.executor.prefect_workers import PrefectWorkers
from tunelib.registry import register_trainable
from tunelib.result import Result
from tunelib.result_grid import ResultGrid
from tunelib.schedulers import create_scheduler
from tunelib.search import create_searcher, grid_search
from tunelib.search.sample import (
    choice,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from tunelib.session import TuneContext, get_checkpoint, get_context, report
from tunelib.stopper import Stopper
from tunelib.trainable import Trainable
from tunelib.tune import (
    _aliases,  # noqa: F401 - installs Ray's paths to schedulers, search
    stopper,
)
from tunelib.tune._wrappers import PlacementGroupFactory, with_parameters, with_resources
from tunelib.tune.callback import Callback
from tunelib.tune.experiment import Experiment
from tunelib.tune.progress_reporter import CLIReporter, JupyterNotebookReporter, ProgressReporter
from tunelib.tune.run import run
from tunelib.tune.tune import run_experiments
from tunelib.tune.tuner import Tuner


class SyncConfig:
    """Accepted for compatibility: tunelib writes trial files straight to storage."""

    def __init__(self, sync_period: int = 300, sync_timeout: int = 1800,
                 sync_artifacts: bool = False, sync_artifacts_on_checkpoint: bool = True):
        self.sync_period = sync_period
        self.sync_timeout = sync_timeout
        self.sync_artifacts = sync_artifacts
        self.sync_artifacts_on_checkpoint = sync_artifacts_on_checkpoint


class ResumeConfig:
    """What a resumed experiment does with finished, unfinished and errored trials."""

    def __init__(self, finished: str = "skip", unfinished: str = "resume", errored: str = "skip"):
        self.finished = finished
        self.unfinished = unfinished
        self.errored = errored


__all__ = [
    "Trainable", "Callback", "TuneError", "grid_search", "register_trainable", "run",
    "with_parameters", "with_resources", "Stopper", "sample_from", "uniform", "quniform",
    "choice", "randint", "lograndint", "qrandint", "qlograndint", "randn", "qrandn",
    "loguniform", "qloguniform", "ExperimentAnalysis", "ResultGrid", "create_searcher",
    "create_scheduler", "PlacementGroupFactory", "Tuner", "TuneConfig", "ResumeConfig",
    "RunConfig", "CheckpointConfig", "FailureConfig", "Result", "Checkpoint", "get_checkpoint",
    "report", "get_context", "TuneContext", "SyncConfig", "schedulers", "search", "stopper",
    "PrefectWorkers", "Experiment", "run_experiments", "CLIReporter", "JupyterNotebookReporter",
    "ProgressReporter",
]
