"""``tunelib.tune.stopper``: Ray's ``ray.tune.stopper`` (the stoppers live in ``tunelib.stopper``).

Example::

    from tunelib.tune.stopper import CombinedStopper, MaximumIterationStopper, TrialPlateauStopper

    stop = CombinedStopper(MaximumIterationStopper(100), TrialPlateauStopper(metric="loss"))
"""

from tunelib.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
)

__all__ = [
    "Stopper", "CombinedStopper", "ExperimentPlateauStopper", "FunctionStopper",
    "MaximumIterationStopper", "NoopStopper", "TimeoutStopper", "TrialPlateauStopper",
]
