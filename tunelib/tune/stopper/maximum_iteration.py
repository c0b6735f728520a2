"""Ray's ``ray.tune.stopper.maximum_iteration`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import MaximumIterationStopper

__all__ = ["MaximumIterationStopper"]
