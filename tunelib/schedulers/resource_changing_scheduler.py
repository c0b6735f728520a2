"""``ResourceChangingScheduler``: wrap a scheduler and change live trials' resources, as Ray.

After each result the wrapped scheduler decides; when it says CONTINUE, the
``resources_allocation_function`` may return new resources for the trial, which is then
paused (with a checkpoint) and restarted from it with those resources. The default
function, :class:`DistributeResources`, spreads the machine's free CPUs/GPUs evenly.

What a change means in tunelib: the restarted trial is given the new resources — the
trainable reads them from ``tune.get_context().get_trial_resources()`` /
``Trainable.trial_resources`` and sizes its work accordingly (Ray's usage pattern). The
executor, however, runs a fixed number of trials at once (decided when ``fit()`` starts)
and does not re-assign GPUs to a running worker; that part of a change cannot be honoured
and the scheduler says so once, with a warning naming the trial and the resources.

Example::

    from tunelib.schedulers import ASHAScheduler, ResourceChangingScheduler
    scheduler = ResourceChangingScheduler(ASHAScheduler(max_t=16),
                                          DistributeResources(add_bundles=False))
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Dict, Optional, Set

from tunelib.schedulers import _util
from tunelib.schedulers._distribute_resources import (  # noqa: F401 - Ray's names live here
    Bundles,
    DistributeResources,
    DistributeResourcesToTopJob,
    _bundles_of,
    _DistributeResourcesDefault,
    _DistributeResourcesDistributedDefault,
    _placement_group_factory,
    _sum_bundles,
    _trial_resources,
)
from tunelib.schedulers.trial_scheduler import (
    FIFOScheduler,
    SchedulerController,
    TrialScheduler,
)
from tunelib.trial import RUNNING, Trial

logger = logging.getLogger(__name__)

class ResourceChangingScheduler(TrialScheduler):
    """Wraps a scheduler and changes live trials' resources through a function, as Ray's.

    When ``base_scheduler`` answers CONTINUE, ``resources_allocation_function(controller,
    trial, result, scheduler)`` may return new resources (a ``PlacementGroupFactory`` or a
    dict); the trial is then paused with a checkpoint and restarted from it with them. The
    trainable reads them with ``tune.get_context().get_trial_resources()`` and must
    checkpoint (ideally every iteration) to resume. Cannot be used with
    ``reuse_actors=True``.

    tunelib's executor runs a fixed number of trials at once and does not re-assign GPUs
    to a running worker: a change reaches the trainable, not the executor's concurrency;
    the first change warns saying so.

    Args:
        base_scheduler: The scheduler that decides; ``FIFOScheduler()`` if None.
        resources_allocation_function: See above; None changes nothing (with a warning);
            default :class:`DistributeResources`.

    Example::

        def more_cpus_late(controller, trial, result, scheduler):
            return {"CPU": 2} if result["training_iteration"] >= 3 else None

        scheduler = ResourceChangingScheduler(ASHAScheduler(max_t=16), more_cpus_late)
    """

    def __init__(
        self,
        base_scheduler: Optional[TrialScheduler] = None,
        resources_allocation_function: Optional[
            Callable[[SchedulerController, Trial, Dict[str, Any], "ResourceChangingScheduler"],
                     Optional[Any]]
        ] = _DistributeResourcesDefault,
    ) -> None:
        super().__init__()
        if resources_allocation_function is None:
            warnings.warn(
                "`resources_allocation_function` is None. No resource requirements will be "
                "changed at any time. Pass a correctly defined function to enable "
                "functionality.",
                stacklevel=2,
            )
        self._resources_allocation_function = resources_allocation_function
        self._base_scheduler = base_scheduler or FIFOScheduler()
        self._base_trial_resources: Optional[Any] = None
        self._trials_to_reallocate: Dict[Trial, Any] = {}
        self._reallocated_trial_ids: Set[str] = set()
        # the bundles this scheduler gave each trial (tunelib's Trial keeps a summed dict)
        self._trial_bundles: Dict[str, Bundles] = {}
        self._warned_executor = False
        self._metric = None
        self._mode = None

    @property
    def metric(self) -> Optional[str]:
        return self._base_scheduler._metric

    @property
    def base_trial_resources(self) -> Optional[Any]:
        """The first trial's resources (a PlacementGroupFactory): every trial's floor."""
        return self._base_trial_resources

    def trial_bundles(self, trial: Trial) -> Bundles:
        """``trial``'s resources as Ray bundles (``[{"CPU": 2, "GPU": 0}]``)."""
        if trial.trial_id in self._trial_bundles:
            return self._trial_bundles[trial.trial_id]
        return _bundles_of(trial.resources)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        self._metric = metric
        self._mode = mode
        return self._base_scheduler.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial, **kwargs) -> None:
        if self._base_trial_resources is None:
            self._base_trial_resources = _placement_group_factory(self.trial_bundles(trial))
        # trials restored after a change come back with their changed resources
        elif trial.trial_id not in self._reallocated_trial_ids:
            if _sum_bundles(self.trial_bundles(trial)) != _sum_bundles(
                self._base_trial_resources.bundles
            ):
                raise RuntimeError(
                    "ResourceChangingScheduler doesn't support trials with varying base "
                    f"resources. First trial had {self._base_trial_resources}, trial {trial} "
                    f"has {trial.resources}."
                )
        return self._base_scheduler.on_trial_add(tune_controller, trial, **kwargs)

    def on_trial_error(self, tune_controller: SchedulerController, trial: Trial, **kwargs):
        return self._base_scheduler.on_trial_error(tune_controller, trial, **kwargs)

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        decision = self._base_scheduler.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.CONTINUE:
            new_resources = self.reallocate_trial_resources_if_needed(
                tune_controller, trial, result
            )
            if new_resources:
                self._trials_to_reallocate[trial] = new_resources
                return TrialScheduler.PAUSE
        return decision

    def on_trial_complete(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict, **kwargs
    ):
        return self._base_scheduler.on_trial_complete(tune_controller, trial, result, **kwargs)

    def on_trial_remove(self, tune_controller: SchedulerController, trial: Trial, **kwargs):
        return self._base_scheduler.on_trial_remove(tune_controller, trial, **kwargs)

    def choose_trial_to_run(self, tune_controller: SchedulerController, **kwargs) -> Optional[Trial]:
        """Apply pending changes to trials no longer running, then ask the base scheduler."""
        spec = getattr(tune_controller, "spec", None)
        if getattr(spec, "reuse_actors", False) or getattr(tune_controller, "_reuse_actors", False):
            raise ValueError(
                "ResourceChangingScheduler cannot be used with `reuse_actors=True`. FIX THIS "
                "by setting `reuse_actors=False` in `tune.TuneConfig()`."
            )
        still_running = {}
        for trial, new_resources in self._trials_to_reallocate.items():
            if trial.status == RUNNING:
                still_running[trial] = new_resources
                continue
            self.set_trial_resources(trial, new_resources)
        self._trials_to_reallocate = still_running
        return self._base_scheduler.choose_trial_to_run(tune_controller, **kwargs)

    def debug_string(self) -> str:
        return f"(ResourceChangingScheduler) {self._base_scheduler.debug_string()}"

    def save(self, checkpoint_path: str) -> None:
        _util.pickle_state(self, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        _util.unpickle_state(self, checkpoint_path)

    def set_trial_resources(self, trial: Trial, new_resources: Any) -> bool:
        """Give ``trial`` (not running) ``new_resources``; True if they were set.

        Example::

            scheduler.set_trial_resources(trial, {"CPU": 2})
        """
        if not new_resources:
            return False
        if trial.status == RUNNING:
            raise ValueError("Cannot update resources while Trial is running.")
        bundles = _bundles_of(new_resources)
        old = dict(trial.resources)
        trial.resources = _trial_resources(bundles)
        self._trial_bundles[trial.trial_id] = bundles
        self._reallocated_trial_ids.add(trial.trial_id)
        logger.info("Setting trial %s resource to %s with %s", trial, trial.resources, bundles)
        self._warn_executor_once(trial, old)
        return True

    def _warn_executor_once(self, trial: Trial, old: Dict[str, float]) -> None:
        if self._warned_executor:
            return
        self._warned_executor = True
        gpu_note = ""
        if trial.resources.get("gpu", 0) != old.get("gpu", 0):
            gpu_note = (
                " GPUs are not re-assigned either: the trial keeps the devices its worker "
                "was started with."
            )
        warnings.warn(
            f"ResourceChangingScheduler changed the resources of trial {trial} from {old} to "
            f"{trial.resources}. tunelib gives the restarted trial these resources "
            "(tune.get_context().get_trial_resources()), but its executor runs a fixed "
            "number of trials at once (set when fit() started), so the change does not "
            f"change how many trials run concurrently.{gpu_note} (Warned once.)",
            stacklevel=2,
        )

    def _are_resources_the_same(self, trial: Trial, new_resources: Any) -> bool:
        return _bundles_of(new_resources) == self.trial_bundles(trial)

    def reallocate_trial_resources_if_needed(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> Optional[Any]:
        """Call the allocation function; its answer if it differs from what the trial has."""
        fn = self._resources_allocation_function
        if fn is None:
            return None
        if not getattr(fn, "metric", None):
            fn.metric = getattr(self._base_scheduler, "_metric", self._metric)
        if not getattr(fn, "mode", None):
            fn.mode = getattr(self._base_scheduler, "_mode", self._mode)
        new_resources = fn(tune_controller, trial, result, self)
        if new_resources and not self._are_resources_the_same(trial, new_resources):
            return new_resources
        return None
