"""Ray's ``ray.tune.stopper.function_stopper`` path (the stoppers are defined in ``tunelib.stopper``)."""

from tunelib.stopper import FunctionStopper

__all__ = ["FunctionStopper"]
