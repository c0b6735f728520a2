"""Ray's ``ray.tune.trainable.util`` path to ``with_parameters`` and ``with_resources``."""

from tunelib.tune._wrappers import with_parameters, with_resources

__all__ = ["with_parameters", "with_resources"]
