"""``from tunelib import train``: the Ray Train names a Tune trial uses.

``train.report`` / ``train.get_checkpoint`` / ``train.get_context`` work inside a Tune
trial exactly like their ``tune`` twins.
"""

from tunelib.checkpoint import Checkpoint
from tunelib.config import CheckpointConfig, FailureConfig, RunConfig
from tunelib.result import Result
from tunelib.session import TuneContext as TrainContext
from tunelib.session import get_checkpoint, get_context, report

__all__ = [
    "Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig", "Result", "TrainContext",
    "get_checkpoint", "get_context", "report",
]
