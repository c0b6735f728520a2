"""Trial schedulers, as ``ray.tune.schedulers``: pure logic, results in, decisions out.

Example::

    from tunelib.tune.schedulers import ASHAScheduler   # or tunelib.schedulers
    scheduler = ASHAScheduler(metric="loss", mode="min", max_t=100)

Not provided: ``HyperBandForBOHB``, ``PopulationBasedTrainingReplay``, ``PB2``,
``ResourceChangingScheduler``.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Type

from tunelib.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from tunelib.schedulers.hyperband import HyperBandScheduler
from tunelib.schedulers.median_stopping_rule import MedianStoppingRule
from tunelib.schedulers.pbt import PopulationBasedTraining
from tunelib.schedulers.trial_scheduler import (
    FIFOScheduler,
    SchedulerController,
    TrialScheduler,
)

SCHEDULER_IMPORT: Dict[str, Type[TrialScheduler]] = {
    "fifo": FIFOScheduler,
    "async_hyperband": AsyncHyperBandScheduler,
    "asynchyperband": AsyncHyperBandScheduler,
    "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule,
    "hyperband": HyperBandScheduler,
    "pbt": PopulationBasedTraining,
}

_NOT_PROVIDED = ("hb_bohb", "pbt_replay", "pb2", "resource_changing")


def create_scheduler(scheduler: str, **kwargs: Any) -> TrialScheduler:
    """Instantiate a scheduler from its name; keyword arguments it does not take are ignored.

    Example::

        scheduler = create_scheduler("async_hyperband", metric="loss", mode="min", max_t=10)
    """
    name = scheduler.lower()
    if name not in SCHEDULER_IMPORT:
        extra = " (not provided by tunelib)" if name in _NOT_PROVIDED else ""
        raise ValueError(
            f"The `scheduler` argument must be one of {list(SCHEDULER_IMPORT)}. "
            f"Got: {scheduler!r}{extra}"
        )
    cls = SCHEDULER_IMPORT[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


__all__ = [
    "TrialScheduler",
    "HyperBandScheduler",
    "AsyncHyperBandScheduler",
    "ASHAScheduler",
    "MedianStoppingRule",
    "FIFOScheduler",
    "PopulationBasedTraining",
    "create_scheduler",
    "SchedulerController",
]
