"""``tunelib.tune.tune_config``: Ray's ``ray.tune.tune_config`` path to the Tuner's configs."""

from tunelib.config import TuneConfig
from tunelib.tune import ResumeConfig

__all__ = ["TuneConfig", "ResumeConfig"]
