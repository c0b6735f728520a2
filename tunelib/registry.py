"""``tune.register_trainable``: refer to a trainable by name.

Example::

    tune.register_trainable("lambda_id", lambda config: tune.report({"score": 1}))
    tune.run("lambda_id")          # trials are named lambda_id_<trial id>, as in Ray
"""

from __future__ import annotations

from typing import Callable, Dict, Union

_TRAINABLES: Dict[str, object] = {}


def register_trainable(name: str, trainable: Union[Callable, type], warn: bool = True) -> None:
    """Register ``trainable`` under ``name`` so ``Tuner("name")`` / ``tune.run("name")`` work.

    ``warn`` is accepted for Ray's signature; Ray does not use it either.

    Raises:
        ValueError: ``name`` is not a non-empty string.
        TypeError: ``trainable`` is neither a function nor a ``tune.Trainable`` subclass.
    """
    from tunelib.trainable import Trainable

    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
    if isinstance(trainable, type):
        if not issubclass(trainable, Trainable):
            raise TypeError(
                f"`trainable` class {trainable.__name__} must subclass tune.Trainable "
                "(Ray: 'Second argument must be convertable to Trainable')."
            )
    elif not callable(trainable):
        raise TypeError(f"`trainable` must be a function or Trainable class, got {trainable!r}.")
    _TRAINABLES[name] = trainable


def is_registered(name: str) -> bool:
    """Whether a trainable is registered under ``name``."""
    return name in _TRAINABLES


def get_trainable(name: str):
    """The trainable registered under ``name``; ValueError naming the registered ones."""
    try:
        return _TRAINABLES[name]
    except KeyError:
        raise ValueError(
            f"Unknown trainable {name!r}: register it first with tune.register_trainable(name, fn). "
            f"Registered: {sorted(_TRAINABLES)}."
        ) from None
