"""Ray's ``ray.tune.execution.placement_groups`` path to ``PlacementGroupFactory``.

Example::

    from tunelib.tune.execution.placement_groups import PlacementGroupFactory

    tune.with_resources(train_fn, PlacementGroupFactory([{"CPU": 2}]))
"""

from tunelib.tune._wrappers import PlacementGroupFactory

__all__ = ["PlacementGroupFactory"]
