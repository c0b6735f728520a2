"""Search-space functions ``tune.uniform`` & co, as Ray has them (domains live in ``domain``).

Example::

    from tunelib import tune
    space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 5)}
    tune.uniform(0, 1).sample(random_state=0)   # a float in [0, 1)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

from tunelib.search.domain import (  # noqa: F401  (re-exported: Ray's ray.tune.search.sample names)
    _MISSING,
    BaseSampler,
    Categorical,
    Domain,
    Float,
    Function,
    Grid,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    RandomState,
    Sampler,
    Uniform,
    _BackwardsCompatibleNumpyRng,
    _warn_for_base,
)


def _make(call: str, build: Callable[[], Domain]) -> Domain:
    """Build a domain and validate it; a ValueError names the call that was made."""
    try:
        domain = build()
        domain.validate()
    except ValueError as exc:
        raise ValueError(f"tune.{call}: {exc}") from None
    return domain


def sample_from(func: Callable[[Dict], Any]):
    """Sample a value by calling ``func``; with one argument it gets the trial's spec.

    ``spec.config`` (or ``spec["config"]``) holds the trial's other resolved values.

    Example::

        {"a": tune.randint(5, 10), "b": tune.sample_from(lambda spec: spec.config.a * 2)}
    """
    return Function(func)


def uniform(lower: float, upper: float):
    """Sample a float uniformly in ``[lower, upper)``.

    Example::

        {"dropout": tune.uniform(0.0, 0.5)}
    """
    return _make(f"uniform({lower!r}, {upper!r})", lambda: Float(lower, upper).uniform())


def quniform(lower: float, upper: float, q: float):
    """Sample a float uniformly, rounded to a multiple of ``q`` (``upper`` inclusive).

    Example::

        {"momentum": tune.quniform(0.5, 0.9, 0.1)}
    """
    return _make(
        f"quniform({lower!r}, {upper!r}, q={q!r})",
        lambda: Float(lower, upper).uniform().quantized(q),
    )


def loguniform(lower: float, upper: float, base: object = _MISSING):
    """Sample a float log-uniformly in ``[lower, upper)``; ``base`` is deprecated and ignored.

    Example::

        {"lr": tune.loguniform(1e-4, 1e-1)}
    """
    if base is not _MISSING:
        _warn_for_base()
    return _make(f"loguniform({lower!r}, {upper!r})", lambda: Float(lower, upper).loguniform())


def qloguniform(lower: float, upper: float, q: float, base: object = _MISSING):
    """Sample a float log-uniformly, rounded to a multiple of ``q`` (``upper`` inclusive).

    Example::

        {"lr": tune.qloguniform(1e-4, 1e-1, 5e-5)}
    """
    if base is not _MISSING:
        _warn_for_base()
    return _make(
        f"qloguniform({lower!r}, {upper!r}, q={q!r})",
        lambda: Float(lower, upper).loguniform().quantized(q),
    )


def choice(categories: Sequence):
    """Sample one of ``categories`` uniformly.

    Example::

        {"activation": tune.choice(["relu", "tanh"])}
    """
    return _make(f"choice({categories!r})", lambda: Categorical(categories).uniform())


def randint(lower: int, upper: int):
    """Sample an integer uniformly; ``lower`` inclusive, ``upper`` exclusive.

    Example::

        {"layers": tune.randint(1, 5)}   # 1, 2, 3 or 4
    """
    return _make(f"randint({lower!r}, {upper!r})", lambda: Integer(lower, upper).uniform())


def lograndint(lower: int, upper: int, base: object = _MISSING):
    """Sample an integer log-uniformly; ``lower`` inclusive, ``upper`` exclusive.

    Example::

        {"hidden": tune.lograndint(8, 1024)}
    """
    if base is not _MISSING:
        _warn_for_base()
    return _make(f"lograndint({lower!r}, {upper!r})", lambda: Integer(lower, upper).loguniform())


def qrandint(lower: int, upper: int, q: int = 1):
    """Sample a multiple of ``q`` uniformly; ``upper`` inclusive except when ``q == 1``.

    Example::

        {"batch": tune.qrandint(16, 128, 16)}
    """
    return _make(
        f"qrandint({lower!r}, {upper!r}, q={q!r})",
        lambda: Integer(lower, upper).uniform().quantized(q),
    )


def qlograndint(lower: int, upper: int, q: int, base: object = _MISSING):
    """Sample a multiple of ``q`` log-uniformly; ``upper`` inclusive except when ``q == 1``.

    Example::

        {"hidden": tune.qlograndint(8, 1024, 8)}
    """
    if base is not _MISSING:
        _warn_for_base()
    return _make(
        f"qlograndint({lower!r}, {upper!r}, q={q!r})",
        lambda: Integer(lower, upper).loguniform().quantized(q),
    )


def randn(mean: float = 0.0, sd: float = 1.0):
    """Sample a float from a normal distribution.

    Example::

        {"noise": tune.randn(0.0, 0.1)}
    """
    return _make(f"randn({mean!r}, {sd!r})", lambda: Float(None, None).normal(mean, sd))


def qrandn(mean: float, sd: float, q: float):
    """Sample a float from a normal distribution, rounded to a multiple of ``q``.

    Example::

        {"offset": tune.qrandn(0.0, 1.0, 0.25)}
    """
    return _make(
        f"qrandn({mean!r}, {sd!r}, q={q!r})",
        lambda: Float(None, None).normal(mean, sd).quantized(q),
    )
