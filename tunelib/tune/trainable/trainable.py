"""Ray's ``ray.tune.trainable.trainable`` path to ``Trainable``."""

from tunelib.trainable import Trainable

__all__ = ["Trainable"]
