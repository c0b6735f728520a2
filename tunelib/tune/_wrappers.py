"""Small Ray helpers: with_parameters, with_resources, PlacementGroupFactory."""

from __future__ import annotations

import functools
from typing import Dict, List


def with_parameters(trainable, **kwargs):
    """Pass large or non-JSON objects to a trainable alongside its config.

    Example::

        def train_fn(config, data=None):
            ...

        tuner = tune.Tuner(tune.with_parameters(train_fn, data=dataset), ...)

    A function receives them as keyword arguments; a Trainable's ``setup(config, **kwargs)``
    receives them too.
    """
    from tunelib.trainable import Trainable

    if isinstance(trainable, type) and issubclass(trainable, Trainable):
        params = dict(kwargs)

        class _WithParameters(trainable):
            def setup(self, config):
                return trainable.setup(self, config, **params)

        _WithParameters.__name__ = trainable.__name__
        _WithParameters.__qualname__ = trainable.__qualname__
        return _WithParameters
    if not callable(trainable):
        raise TypeError(
            f"`trainable` passed to with_parameters must be a function or a tune.Trainable "
            f"subclass, got {type(trainable).__name__}."
        )

    @functools.wraps(trainable)
    def inner(config):
        return trainable(config, **kwargs)

    inner._tunelib_wrapped = trainable
    return inner


def with_resources(trainable, resources):
    """Attach per-trial resources (e.g. ``{"cpu": 2, "gpu": 1}``) to a trainable."""
    if callable(resources) and not isinstance(resources, (dict, PlacementGroupFactory)):
        raise TypeError("`resources` must be a dict or a PlacementGroupFactory here.")
    if isinstance(trainable, type):
        wrapped = type(trainable.__name__, (trainable,), {"_tunelib_resources": resources})
        return wrapped

    @functools.wraps(trainable)
    def inner(config):
        return trainable(config)

    inner._tunelib_resources = resources
    inner._tunelib_wrapped = getattr(trainable, "_tunelib_wrapped", trainable)
    return inner


class PlacementGroupFactory:
    """Resource bundles for one trial; tunelib adds the bundles up into one request."""

    def __init__(self, bundles: List[Dict[str, float]], strategy: str = "PACK", *args, **kwargs):
        if not bundles or not all(isinstance(b, dict) for b in bundles):
            raise ValueError("`bundles` must be a non-empty list of dicts like {'CPU': 1}.")
        self.bundles = [dict(b) for b in bundles]
        self.strategy = strategy

    @property
    def required_resources(self) -> Dict[str, float]:
        total: Dict[str, float] = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0) + value
        return total

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles}, strategy={self.strategy!r})"
