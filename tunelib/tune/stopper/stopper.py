"""Ray's ``ray.tune.stopper.stopper`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import CombinedStopper, Stopper

__all__ = ["Stopper", "CombinedStopper"]
