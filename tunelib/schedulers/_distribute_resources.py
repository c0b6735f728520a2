"""The resource allocation functions of ``ResourceChangingScheduler`` (Ray's
``DistributeResources`` and ``DistributeResourcesToTopJob``), and the bundle arithmetic
they share. Pure logic; re-exported by ``tunelib.schedulers.resource_changing_scheduler``.

Example::

    from tunelib.schedulers.resource_changing_scheduler import DistributeResources
    allocate = DistributeResources(increase_by={"CPU": 2}, increase_by_times=3)
"""

from __future__ import annotations

import os
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from tunelib.schedulers.trial_scheduler import SchedulerController
from tunelib.trial import Trial

if TYPE_CHECKING:
    from tunelib.schedulers.resource_changing_scheduler import ResourceChangingScheduler

Bundles = List[Dict[str, float]]


def _bundles_of(resources: Any) -> Bundles:
    """Ray-style bundles (``[{"CPU": 2, "GPU": 0}]``) of a PlacementGroupFactory or a dict.

    A dict may use Ray's keys (``CPU``) or tunelib's (``cpu``); it is one bundle.
    """
    if hasattr(resources, "bundles"):
        return [dict(b) for b in resources.bundles]
    if isinstance(resources, dict):
        bundle = {}
        for key, value in resources.items():
            name = key.upper() if key.lower() in ("cpu", "gpu") else key
            bundle[name] = bundle.get(name, 0) + value
        return [bundle]
    raise TypeError(
        "`resources_allocation_function` must return a PlacementGroupFactory, a dict such as "
        f"{{'CPU': 2, 'GPU': 0}} or None; got {type(resources).__name__}: {resources!r}"
    )


def _sum_bundles(bundles: Bundles) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for bundle in bundles:
        for key, value in bundle.items():
            total[key] = total.get(key, 0) + value
    return total


def _trial_resources(bundles: Bundles) -> Dict[str, float]:
    """tunelib's per-trial resources dict (``{"cpu": 2.0, "gpu": 0.0}``) of Ray bundles."""
    out = {}
    for key, value in _sum_bundles(bundles).items():
        out[key.lower() if key in ("CPU", "GPU") else key] = float(value)
    out.setdefault("cpu", 0.0)
    return out


def _placement_group_factory(bundles: Bundles) -> Any:
    # the façade's PlacementGroupFactory, what Ray's function returns; imported late so
    # that this pure module does not import tunelib.tune at import time
    from tunelib.tune._wrappers import PlacementGroupFactory

    return PlacementGroupFactory(bundles)


def _visible_gpus() -> int:
    from tunelib.runner import _detect_gpus

    return len(_detect_gpus())


class DistributeResources:
    """A uniform resource allocation function: free CPUs/GPUs shared evenly by live trials.

    Every trial keeps at least its base resources (those of the first trial); free
    resources are added in units of ``increase_by`` (1 CPU, or 1 GPU when the base has
    GPUs), in new bundles (``add_bundles``) or in the first one. Returns a
    ``PlacementGroupFactory`` or None (no change).

    Args:
        add_bundles: Add free resources as new bundles instead of growing the first one.
        increase_by: The unit of increase, e.g. ``{"CPU": 2}``.
        increase_by_times: At most this many units are added (< 1: no limit).
        reserve_resources: Resources never given to trials, e.g. ``{"CPU": 1}``.

    Example::

        ResourceChangingScheduler(ASHAScheduler(), DistributeResources(increase_by={"CPU": 2}))
    """

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: Optional[Dict[str, float]] = None,
        increase_by_times: int = -1,
        reserve_resources: Optional[Dict[str, float]] = None,
    ):
        self.add_bundles = add_bundles
        self.increase_by = increase_by or {}
        self.increase_by_times = increase_by_times
        self.reserve_resources = reserve_resources or {}

    def _validate(self, base_bundles: Bundles, result: Dict[str, Any]) -> bool:
        """False if the current resources are kept outright."""
        if not self.add_bundles and len(base_bundles) > 1:
            raise ValueError(
                "If `add_bundles` is False, the number of bundles in `resources_per_trial` "
                f"must be 1 (got {len(base_bundles)})."
            )
        return result.get("training_iteration", 0) >= 1  # not on the first iteration

    def _get_total_available_resources(
        self, tune_controller: SchedulerController
    ) -> Tuple[float, float]:
        """CPUs and GPUs of this machine (tunelib runs trials on one), less the reserve."""
        total = getattr(tune_controller, "total_resources", None)
        cpus = total.get("cpu") if total else os.cpu_count() or 1
        gpus = total.get("gpu") if total else _visible_gpus()
        return (
            cpus - self.reserve_resources.get("CPU", 0),
            gpus - self.reserve_resources.get("GPU", 0),
        )

    @staticmethod
    def _get_used_cpus_and_gpus(bundles: Bundles) -> Tuple[float, float]:
        used = _sum_bundles(bundles)
        return used.get("CPU", 0), used.get("GPU", 0)

    @staticmethod
    def _get_resources_from_bundles(bundles: Bundles) -> Dict[str, float]:
        return _sum_bundles(bundles) if bundles else {"CPU": 0, "GPU": 0}

    @staticmethod
    def _is_bundle_empty(bundle: Dict[str, float]) -> bool:
        return not (bundle.get("CPU", 0) or bundle.get("GPU", 0))

    def _add_two_bundles(
        self,
        bundles_a: Bundles,
        bundles_b: Bundles,
        increase_by: Dict[str, float],
        limit_to_increase_by_times: bool,
        max_increase_by_times: int = -1,
    ) -> Bundles:
        """``bundles_a + bundles_b``, capped at ``increase_by_times`` units when asked."""
        if limit_to_increase_by_times:
            if max_increase_by_times > 0 and self.increase_by_times > 0:
                max_increase_by_times = min(max_increase_by_times, self.increase_by_times)
            elif self.increase_by_times > 0:
                max_increase_by_times = self.increase_by_times
        if self.add_bundles:
            bundles = [b for b in bundles_a if not self._is_bundle_empty(b)] + [
                b for b in bundles_b if not self._is_bundle_empty(b)
            ]
            if max_increase_by_times > 0:
                bundles = bundles[:max_increase_by_times]
            return bundles
        a, b = bundles_a or [{}], bundles_b or [{}]
        bundles = [
            {
                "CPU": a[0].get("CPU", 0) + b[0].get("CPU", 0),
                "GPU": a[0].get("GPU", 0) + b[0].get("GPU", 0),
            }
        ]
        if max_increase_by_times > 0:
            bundles[0]["CPU"] = min(
                bundles[0]["CPU"], increase_by.get("CPU", 0) * max_increase_by_times
            )
            bundles[0]["GPU"] = min(
                bundles[0]["GPU"], increase_by.get("GPU", 0) * max_increase_by_times
            )
        return bundles

    @staticmethod
    def _get_multiplier(
        increase_by: Dict[str, float], cpus: float = 0, gpus: float = 0, max_multiplier: int = -1
    ) -> int:
        """How many ``increase_by`` units fit in ``cpus`` and ``gpus`` (negative: too many)."""
        if increase_by.get("CPU", 0) and increase_by.get("GPU", 0):
            multiplier = min(cpus // increase_by["CPU"], gpus // increase_by["GPU"])
        elif increase_by.get("GPU", 0):
            multiplier = gpus // increase_by["GPU"]
        else:
            multiplier = cpus // increase_by.get("CPU", 0)
        if max_multiplier > 0 and multiplier > 0:
            multiplier = min(max_multiplier, multiplier)
        return int(multiplier)

    def _remove_bundles(
        self, bundles: Bundles, increase_by: Dict[str, float], multiplier: int
    ) -> Bundles:
        multiplier = -abs(multiplier)
        if self.add_bundles:
            return bundles[:multiplier]
        bundles = deepcopy(bundles)
        bundles[0]["CPU"] = max(bundles[0]["CPU"] + increase_by.get("CPU", 0) * multiplier, 0)
        bundles[0]["GPU"] = max(bundles[0]["GPU"] + increase_by.get("GPU", 0) * multiplier, 0)
        return bundles

    def _create_new_bundles(self, increase_by: Dict[str, float], multiplier: int) -> Bundles:
        multiplier = abs(multiplier)
        if self.add_bundles:
            return [increase_by] * int(multiplier)
        return [
            {
                "CPU": increase_by.get("CPU", 0) * multiplier,
                "GPU": increase_by.get("GPU", 0) * multiplier,
            }
        ]

    def _modify_bundles_with_free_resources(
        self,
        bundles: Bundles,
        increase_by: Dict[str, float],
        free_cpus: float,
        free_gpus: float,
        *,
        max_multiplier: int = -1,
        max_increase_by_times: int = -1,
    ) -> Bundles:
        """Grow (free resources) or shrink (overcommitted) ``bundles`` by whole units."""
        multiplier = self._get_multiplier(increase_by, free_cpus, free_gpus, max_multiplier)
        if multiplier < 0:
            return self._remove_bundles(bundles, increase_by, multiplier)
        if multiplier > 0:
            bundles_to_add = self._create_new_bundles(increase_by, multiplier)
            return self._add_two_bundles(
                bundles, bundles_to_add, increase_by, True, max_increase_by_times
            )
        return bundles

    def _get_added_bundles(self, bundles: Bundles, base_bundles: Bundles) -> Bundles:
        """``bundles`` minus ``base_bundles``."""
        if self.add_bundles:
            return bundles[len(base_bundles):]
        bundles = bundles or [{"CPU": 0, "GPU": 0}]
        base_bundles = base_bundles or [{"CPU": 0, "GPU": 0}]
        return [
            {
                "CPU": bundles[0].get("CPU", 0) - base_bundles[0].get("CPU", 0),
                "GPU": bundles[0].get("GPU", 0) - base_bundles[0].get("GPU", 0),
            }
        ]

    def _are_bundles_below_limit(
        self,
        bundles: Bundles,
        base_bundles: Optional[Bundles] = None,
        max_added_cpus: Optional[float] = None,
        max_added_gpus: Optional[float] = None,
    ) -> bool:
        limited = self.increase_by_times > 0
        if not max_added_cpus:
            max_added_cpus = (
                self.increase_by.get("CPU", 0) * self.increase_by_times if limited else np.inf
            )
        if not max_added_gpus:
            max_added_gpus = (
                self.increase_by.get("GPU", 0) * self.increase_by_times if limited else np.inf
            )
        added = self._get_resources_from_bundles(
            self._get_added_bundles(bundles, base_bundles) if base_bundles else bundles
        )
        return (
            added.get("CPU", -np.inf) < max_added_cpus
            or added.get("GPU", -np.inf) < max_added_gpus
        )

    def _get_new_added_bundles(
        self,
        trial: Trial,
        trial_bundles: Callable[[Trial], Bundles],
        all_trials: List[Trial],
        base_bundles: Bundles,
        increase_by: Dict[str, float],
        total_available_cpus: float,
        total_available_gpus: float,
        used_cpus: float,
        used_gpus: float,
    ) -> Bundles:
        """The bundles added to ``trial``'s base: an even share of the free resources."""
        upper_limit_all_trials_bundles: List[Bundles] = [[] for _ in all_trials]
        free_cpus = total_available_cpus - used_cpus
        free_gpus = total_available_gpus - used_gpus
        base_resources = self._get_resources_from_bundles(base_bundles)
        cpus_to_distribute = total_available_cpus - base_resources.get("CPU", 0) * len(all_trials)
        gpus_to_distribute = total_available_gpus - base_resources.get("GPU", 0) * len(all_trials)
        max_increase_by_times = 0
        # the upper limit of a uniform allocation: hand out one unit per trial in turn,
        # from a clean slate, until the resources or every trial's limit are exhausted
        i = 0
        trials_at_limit: Set[int] = set()
        while (
            len(trials_at_limit) < len(all_trials)
            and cpus_to_distribute >= increase_by.get("CPU", 0)
            and gpus_to_distribute >= increase_by.get("GPU", 0)
        ):
            idx = i % len(upper_limit_all_trials_bundles)
            old_bundles = deepcopy(upper_limit_all_trials_bundles[idx])
            upper_limit_all_trials_bundles[idx] = self._modify_bundles_with_free_resources(
                upper_limit_all_trials_bundles[idx],
                increase_by,
                cpus_to_distribute,
                gpus_to_distribute,
                max_multiplier=1,
            )
            added = self._get_resources_from_bundles(
                self._get_added_bundles(upper_limit_all_trials_bundles[idx], old_bundles)
            )
            if not added.get("CPU", 0) and not added.get("GPU", 0):
                trials_at_limit.add(idx)
            elif idx == 0:
                max_increase_by_times += 1
            cpus_to_distribute -= added.get("CPU", 0)
            gpus_to_distribute -= added.get("GPU", 0)
            i += 1
        return self._modify_bundles_with_free_resources(
            self._get_added_bundles(trial_bundles(trial), base_bundles),
            increase_by,
            free_cpus,
            free_gpus,
            max_increase_by_times=max_increase_by_times,
        )

    def __call__(
        self,
        tune_controller: SchedulerController,
        trial: Trial,
        result: Dict[str, Any],
        scheduler: "ResourceChangingScheduler",
    ) -> Optional[Any]:
        """New resources for ``trial`` (a ``PlacementGroupFactory``), or None.

        Example::

            DistributeResources()(tune_controller, trial, result, scheduler)
        """
        base = scheduler.base_trial_resources
        base_bundles = _bundles_of(base) if base is not None else [{"CPU": 1, "GPU": 0}]
        if not self._validate(base_bundles, result):
            return None
        if self.increase_by:
            increase_by = self.increase_by
            if self._is_bundle_empty(increase_by) or min(increase_by.values()) < 0:
                raise ValueError(
                    f"`increase_by` must hold a positive CPU or GPU amount, got {increase_by!r}"
                )
        elif self.add_bundles:
            increase_by = base_bundles[-1]
        elif base_bundles[0].get("GPU", 0):
            increase_by = {"GPU": 1}
        else:
            increase_by = {"CPU": 1}
        base_bundles = deepcopy(base_bundles)
        total_cpus, total_gpus = self._get_total_available_resources(tune_controller)
        all_trials = tune_controller.get_live_trials()
        used = [self._get_used_cpus_and_gpus(scheduler.trial_bundles(t)) for t in all_trials]
        used_cpus = sum(c for c, _ in used)
        used_gpus = sum(g for _, g in used)
        added_bundles = self._get_new_added_bundles(
            trial,
            scheduler.trial_bundles,
            all_trials,
            base_bundles,
            increase_by,
            total_cpus,
            total_gpus,
            used_cpus,
            used_gpus,
        )
        new_bundles = self._add_two_bundles(base_bundles, added_bundles, increase_by, False)
        return _placement_group_factory(new_bundles)


class DistributeResourcesToTopJob(DistributeResources):
    """Give all free resources to the best trial (by ``metric``/``mode``), as Ray's.

    Previous best trials keep what they got unless resources are overcommitted. Args as
    :class:`DistributeResources`, plus ``metric`` and ``mode`` (default: the scheduler's).

    Example::

        ResourceChangingScheduler(ASHAScheduler(), DistributeResourcesToTopJob(mode="max"))
    """

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: Optional[Dict[str, float]] = None,
        increase_by_times: int = -1,
        reserve_resources: Optional[Dict[str, float]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
    ):
        super().__init__(add_bundles, increase_by, increase_by_times, reserve_resources)
        self.metric = metric
        self.mode = mode

    @property
    def _metric_op(self) -> float:
        if self.mode not in ("min", "max"):
            raise ValueError("The mode parameter can only be either min or max.")
        return 1.0 if self.mode == "max" else -1.0

    def _get_new_added_bundles(
        self,
        trial: Trial,
        trial_bundles: Callable[[Trial], Bundles],
        all_trials: List[Trial],
        base_bundles: Bundles,
        increase_by: Dict[str, float],
        total_available_cpus: float,
        total_available_gpus: float,
        used_cpus: float,
        used_gpus: float,
    ) -> Bundles:
        if self.metric is None:
            raise ValueError(
                "The metric parameter cannot be None. The parameter can be set in either "
                "`DistributeResourcesToTopJob`, the base scheduler or in `tune.TuneConfig()` "
                "(highest to lowest priority)."
            )
        free_cpus = total_available_cpus - used_cpus
        free_gpus = total_available_gpus - used_gpus
        sorted_trials = sorted(
            all_trials, key=lambda t: -self._metric_op * t.last_result.get(self.metric, np.inf)
        )
        added_bundles = self._get_added_bundles(trial_bundles(trial), base_bundles)
        best_trial = next(
            (
                t
                for t in sorted_trials
                if self._are_bundles_below_limit(trial_bundles(t), base_bundles)
            ),
            sorted_trials[0],
        )
        if (
            trial.trial_id != best_trial.trial_id
            and self._get_multiplier(increase_by, free_cpus, free_gpus) >= 0
        ):
            return added_bundles  # only the best trial grows; others only shrink
        return self._modify_bundles_with_free_resources(
            added_bundles, increase_by, free_cpus, free_gpus
        )


_DistributeResourcesDefault = DistributeResources(add_bundles=False)
_DistributeResourcesDistributedDefault = DistributeResources(add_bundles=True)
