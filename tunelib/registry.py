"""``tune.register_trainable``: refer to a trainable by name."""

from __future__ import annotations

from typing import Callable, Dict, Union

_TRAINABLES: Dict[str, object] = {}


def register_trainable(name: str, trainable: Union[Callable, type], warn: bool = True) -> None:
    """Register ``trainable`` under ``name`` so ``Tuner("name")`` / ``tune.run("name")`` work."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
    if not callable(trainable):
        raise TypeError(f"`trainable` must be a function or Trainable class, got {trainable!r}.")
    _TRAINABLES[name] = trainable


def get_trainable(name: str):
    try:
        return _TRAINABLES[name]
    except KeyError:
        raise ValueError(
            f"Unknown trainable {name!r}: register it first with tune.register_trainable(name, fn). "
            f"Registered: {sorted(_TRAINABLES)}."
        ) from None
