"""Ray's ``ray.tune.stopper.trial_plateau`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import TrialPlateauStopper

__all__ = ["TrialPlateauStopper"]
