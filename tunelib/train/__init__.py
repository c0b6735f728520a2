"""``from tunelib import train``: Ray Train's public API, run by Prefect.

``train.report`` / ``train.get_checkpoint`` / ``train.get_context`` work inside a Tune
trial and inside each worker of a trainer (``DataParallelTrainer``,
``train.torch.TorchTrainer``), where ``get_context()`` gives the worker's ranks; elsewhere
they raise RuntimeError, as Ray Train's do. ``fit()``
returns Ray Train's ``Result``: the latest checkpoint and the metrics reported with it.

Example::

    from tunelib import train
    from tunelib.train.torch import TorchTrainer

    def train_loop_per_worker(config):
        for epoch in range(config["epochs"]):
            train.report({"epoch": epoch, "rank": train.get_context().get_world_rank()})

    result = TorchTrainer(train_loop_per_worker, train_loop_config={"epochs": 3},
                          scaling_config=train.ScalingConfig(num_workers=2)).fit()
"""

from tunelib.checkpoint import Checkpoint
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig
from tunelib.train._config import ScalingConfig, TrainingFailedError, WorkerGroupError
from tunelib.train._context import (
    TrainContext,
    get_checkpoint,
    get_context,
    get_dataset_shard,
    report,
)
from tunelib.train._result import Result
from tunelib.train.trainer import DataParallelTrainer


class SyncConfig:
    """Accepted for compatibility: tunelib writes trial files straight to storage."""

    def __init__(self, sync_period: int = 300, sync_timeout: int = 1800,
                 sync_artifacts: bool = False, sync_artifacts_on_checkpoint: bool = True):
        self.sync_period = sync_period
        self.sync_timeout = sync_timeout
        self.sync_artifacts = sync_artifacts
        self.sync_artifacts_on_checkpoint = sync_artifacts_on_checkpoint


__all__ = [
    "Checkpoint", "CheckpointConfig", "DataParallelTrainer", "FailureConfig", "Result",
    "RunConfig", "ScalingConfig", "SyncConfig", "TrainContext", "TrainingFailedError",
    "WorkerGroupError", "get_checkpoint", "get_context", "get_dataset_shard", "report",
]
