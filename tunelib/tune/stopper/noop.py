"""Ray's ``ray.tune.stopper.noop`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import NoopStopper

__all__ = ["NoopStopper"]
