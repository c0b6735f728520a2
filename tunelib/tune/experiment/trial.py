"""Ray's ``ray.tune.experiment.trial`` path to ``Trial`` (defined in ``tunelib.trial``)."""

from tunelib.trial import Trial

__all__ = ["Trial"]
