"""Trial schedulers, as ``ray.tune.schedulers``: pure logic, results in, decisions out.

This package (every submodule included) is also ``tunelib.tune.schedulers``, Ray's path.

Example::

    from tunelib.tune.schedulers import ASHAScheduler   # or tunelib.schedulers
    scheduler = ASHAScheduler(metric="loss", mode="min", max_t=100)

``PB2`` needs scikit-learn (``tunelib[pb2]``); it is imported when first used.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Type

from tunelib.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from tunelib.schedulers.hb_bohb import HyperBandForBOHB
from tunelib.schedulers.hyperband import HyperBandScheduler
from tunelib.schedulers.median_stopping_rule import MedianStoppingRule
from tunelib.schedulers.pbt import PopulationBasedTraining
from tunelib.schedulers.pbt_replay import PopulationBasedTrainingReplay
from tunelib.schedulers.resource_changing_scheduler import (
    DistributeResources,
    DistributeResourcesToTopJob,
    ResourceChangingScheduler,
)
from tunelib.schedulers.trial_scheduler import (
    FIFOScheduler,
    SchedulerController,
    TrialScheduler,
)


def _pb2() -> Type[TrialScheduler]:
    from tunelib.schedulers.pb2 import PB2

    return PB2


def __getattr__(name: str) -> Any:
    # PB2 imports pandas and scikit-learn: only when asked for
    if name == "PB2":
        return _pb2()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SCHEDULER_IMPORT: Dict[str, Type[TrialScheduler]] = {
    "fifo": FIFOScheduler,
    "async_hyperband": AsyncHyperBandScheduler,
    "asynchyperband": AsyncHyperBandScheduler,
    "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule,
    "hyperband": HyperBandScheduler,
    "pbt": PopulationBasedTraining,
    "hb_bohb": HyperBandForBOHB,
    "pbt_replay": PopulationBasedTrainingReplay,
    "resource_changing": ResourceChangingScheduler,
}
# names whose class is imported on first use
_LAZY_SCHEDULERS = {"pb2": _pb2}


def create_scheduler(scheduler: str, **kwargs: Any) -> TrialScheduler:
    """Instantiate a scheduler from its name; keyword arguments it does not take are ignored.

    Example::

        scheduler = create_scheduler("async_hyperband", metric="loss", mode="min", max_t=10)
    """
    name = scheduler.lower()
    if name in _LAZY_SCHEDULERS:
        cls = _LAZY_SCHEDULERS[name]()
    elif name in SCHEDULER_IMPORT:
        cls = SCHEDULER_IMPORT[name]
    else:
        raise ValueError(
            "The `scheduler` argument must be one of "
            f"{list(SCHEDULER_IMPORT) + list(_LAZY_SCHEDULERS)}. Got: {scheduler!r}"
        )
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
    "PopulationBasedTrainingReplay",
    "PB2",
    "HyperBandForBOHB",
    "ResourceChangingScheduler",
    "DistributeResources",
    "DistributeResourcesToTopJob",
    "create_scheduler",
    "SchedulerController",
]
