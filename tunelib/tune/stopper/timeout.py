"""Ray's ``ray.tune.stopper.timeout`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import TimeoutStopper

__all__ = ["TimeoutStopper"]
