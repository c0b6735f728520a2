"""Configs as objects: the one place that pickles them, and that says which value cannot be.

A trial's config travels as a pickle (to worker processes, into ``params.pkl`` and into the
experiment state), so the trial, ``Result.config`` and a resumed trial all see the objects
the search produced: tuples, numpy scalars, functions, lambdas, dataclasses. cloudpickle,
as Ray's, so that lambdas and classes defined in the user's script travel by value.
params.json and the experiment state's ``config`` stay Ray's JSON view beside it.

Example::

    from tunelib import _pickling

    blob = _pickling.dumps({"act": lambda x: x + 1})
    _pickling.loads(blob)["act"](1)                                    # 2
    _pickling.unpicklable_path({"opt": {"lock": threading.Lock()}})     # ("['opt']['lock']", lock)
"""

from __future__ import annotations

import base64
import pickle
from typing import Any, Optional, Tuple

import cloudpickle

__all__ = ["dumps", "loads", "to_text", "from_text", "unpicklable_path", "check_picklable"]


def dumps(obj: Any) -> bytes:
    """``obj`` pickled with cloudpickle (Ray's choice: lambdas and script-defined classes too)."""
    return cloudpickle.dumps(obj)


def send(conn, message: Any) -> None:
    """Send ``message`` over a ``multiprocessing`` connection: with the plain pickler (the
    fast path, every result), else with cloudpickle (a lambda or a class defined in the
    user's script in a config, as Ray sends them). The receiving ``recv()`` reads both."""
    try:
        conn.send(message)  # pickles before it writes: a failure sends nothing
    except (pickle.PicklingError, TypeError, AttributeError):
        conn.send_bytes(dumps(message))


def loads(data: bytes) -> Any:
    """The inverse of :func:`dumps` (plain ``pickle.loads``: cloudpickle output needs no more)."""
    return pickle.loads(data)


def to_text(obj: Any) -> str:
    """``obj`` pickled, as base64 text for a JSON field (the experiment state's)."""
    return base64.b64encode(dumps(obj)).decode("ascii")


def from_text(text: str) -> Any:
    """The inverse of :func:`to_text`; raises what unpickling raises (a class that cannot
    be imported here, a corrupt field)."""
    return loads(base64.b64decode(text.encode("ascii"), validate=True))


def unpicklable_path(value: Any, path: str = "") -> Optional[Tuple[str, Any]]:
    """``(key path, value)`` of the innermost value in ``value`` that cannot be pickled,
    walking dicts, lists and tuples (``"['opt']['lock']"``, ``"['layers'][2]"``); None
    when all of it pickles. When a container fails but each item pickles alone, the
    container itself is named."""
    try:
        dumps(value)
        return None
    except Exception:  # noqa: BLE001 - any pickling failure: find where it is
        pass
    if isinstance(value, dict):
        items = ((f"[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        items = iter(())
    for suffix, item in items:
        found = unpicklable_path(item, path + suffix)
        if found is not None:
            return found
    return path, value


def check_picklable(config: Any, name: str = "param_space") -> None:
    """Raise a ``TypeError`` naming the key path and the type of the first value of
    ``config`` that cannot be pickled, so that it cannot reach a worker process.

    >>> import threading
    >>> check_picklable({"opt": {"lock": threading.Lock()}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: param_space['opt']['lock'] holds a _thread.lock, which cannot be pickled ...
    """
    found = unpicklable_path(config)
    if found is None:
        return
    path, value = found
    try:
        dumps(value)
        cause = "it cannot be pickled"
    except Exception as exc:  # noqa: BLE001 - reported, with its own words
        cause = f"{type(exc).__name__}: {exc}"
    kind = type(value)
    qualname = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    raise TypeError(
        f"{name}{path} holds a {qualname}, which cannot be pickled ({cause}), so the trial's "
        "config cannot be sent to the process that runs it, nor saved for a resume. Create "
        "the object inside the trainable (from a plain value in the config), or pass it with "
        "tune.with_parameters(trainable, ...)."
    )
