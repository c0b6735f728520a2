"""``tunelib.tune.execution``: the one public name of Ray's ``ray.tune.execution``
(``placement_groups.PlacementGroupFactory``); tunelib's engine is ``tunelib.controller``."""
