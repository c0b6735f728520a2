"""Keyword checking with suggestions: ``num_sample=`` → "did you mean 'num_samples'?"."""

from __future__ import annotations

import difflib
import functools
import inspect


def check_keywords(func):
    """Wrap ``func`` (a function or an ``__init__``) so unknown keywords fail with a
    message naming them, the closest valid name, and every allowed name."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func
    allowed = [n for n, p in params.items()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]
    public = [n for n in allowed if not n.startswith("_")]
    owner = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for key in kwargs:
            if key not in params:
                close = difflib.get_close_matches(key, public, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(
                    f"{owner}() got an unexpected keyword argument {key!r}{hint}. "
                    f"Allowed: {', '.join(public)}."
                )
        return func(*args, **kwargs)

    return wrapper


def check_class_keywords(cls):
    """Class decorator: apply ``check_keywords`` to ``cls.__init__`` (after @dataclass)."""
    cls.__init__ = check_keywords(cls.__init__)
    return cls
