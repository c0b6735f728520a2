"""Ray's ``ray.tune.stopper.experiment_plateau`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import ExperimentPlateauStopper

__all__ = ["ExperimentPlateauStopper"]
