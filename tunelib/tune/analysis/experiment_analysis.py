"""Ray's ``ray.tune.analysis.experiment_analysis`` path to ``ExperimentAnalysis``."""

from tunelib.analysis import ExperimentAnalysis

__all__ = ["ExperimentAnalysis"]
