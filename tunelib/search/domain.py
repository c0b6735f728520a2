"""Parameter domains (``Float``, ``Integer``, ``Categorical``, ``Function``) and their samplers.

Users build them through :mod:`tunelib.search.sample` (``tune.uniform`` & co); Ray's names.

Example::

    Float(1e-4, 1e-1).loguniform().sample(random_state=0)
"""

from __future__ import annotations

import logging
import warnings
from copy import copy
from inspect import signature
from math import isclose, isfinite
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

_MISSING = object()  # sentinel: the deprecated ``base`` argument was not passed


def _warn_for_base() -> None:
    warnings.warn(
        "The `base` argument is deprecated. Please remove it as it is not actually "
        "needed in this method.",
        DeprecationWarning,
        stacklevel=3,
    )


class _BackwardsCompatibleNumpyRng:
    """One interface over ``np.random.Generator``, ``RandomState``, a seed, or ``np.random``."""

    def __init__(
        self, generator_or_seed: Union[np.random.Generator, np.random.RandomState, int, None] = None
    ):
        if isinstance(generator_or_seed, _BackwardsCompatibleNumpyRng):
            generator_or_seed = generator_or_seed._rng
        if generator_or_seed is None or isinstance(
            generator_or_seed, (np.random.RandomState, np.random.Generator)
        ):
            self._rng = generator_or_seed
        else:
            self._rng = np.random.default_rng(generator_or_seed)

    @property
    def legacy_rng(self) -> bool:
        return not isinstance(self._rng, np.random.Generator)

    @property
    def rng(self):
        # never store np.random itself: it does not pickle
        return self._rng if self._rng is not None else np.random

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_rng":
            raise AttributeError(name)
        if self.legacy_rng:
            name = {"integers": "randint", "random": "rand"}.get(name, name)
        return getattr(self.rng, name)


RandomState = Union[
    None, _BackwardsCompatibleNumpyRng, np.random.Generator, np.random.RandomState, int
]


def _as_rng(random_state: RandomState) -> _BackwardsCompatibleNumpyRng:
    if isinstance(random_state, _BackwardsCompatibleNumpyRng):
        return random_state
    return _BackwardsCompatibleNumpyRng(random_state)


def _one_or_many(domain: "Domain", items):
    return items if len(items) > 1 else domain.cast(items[0])


class Domain:
    """A parameter's type and valid range; sample it with :meth:`sample`.

    Example::

        d = Float(0.0, 1.0).uniform()
        d.sample(random_state=42)
    """

    sampler = None
    default_sampler_cls = None

    def cast(self, value):
        """Cast ``value`` to the domain's type."""
        return value

    def set_sampler(self, sampler, allow_override=False):
        if self.sampler and not allow_override:
            raise ValueError(
                "You can only choose one sampler for parameter domains. Existing sampler "
                f"for parameter {type(self).__name__}: {self.sampler}. Tried to add {sampler}"
            )
        self.sampler = sampler

    def get_sampler(self):
        return self.sampler or self.default_sampler_cls()

    def sample(
        self,
        config: Optional[Union[List[Dict], Dict]] = None,
        size: int = 1,
        random_state: RandomState = None,
    ):
        """Draw ``size`` values (one value when ``size == 1``)."""
        return self.get_sampler().sample(
            self, config=config, size=size, random_state=_as_rng(random_state)
        )

    def is_grid(self) -> bool:
        return isinstance(self.sampler, Grid)

    def is_function(self) -> bool:
        return False

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` lies in this domain."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise ``ValueError`` (saying what is allowed) if the domain cannot be sampled."""
        sampler = self.get_sampler()
        if isinstance(sampler, Quantized) and not (
            isinstance(sampler.q, (int, float)) and sampler.q > 0
        ):
            raise ValueError(f"quantization `q` must be > 0, got q={sampler.q!r}")

    @property
    def domain_str(self) -> str:
        return "(unknown)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.domain_str} sampler={self.get_sampler()}"


class Sampler:
    """How a :class:`Domain` draws values.

    Example::

        Float(0, 1).uniform().get_sampler()   # a Uniform sampler
    """

    def sample(self, domain: Domain, config=None, size: int = 1, random_state: RandomState = None):
        raise NotImplementedError


class BaseSampler(Sampler):
    """Sampler of ``sample_from`` functions.

    Example::

        isinstance(Function(lambda: 1).get_sampler(), BaseSampler)   # True
    """

    def __str__(self):
        return "Base"


class Uniform(Sampler):
    """Uniform sampling (marker base of each domain's uniform sampler).

    Example::

        isinstance(uniform(0, 1).get_sampler(), Uniform)   # True
    """

    def __str__(self):
        return "Uniform"


class LogUniform(Sampler):
    """Log-uniform sampling (marker base of each domain's log-uniform sampler).

    Example::

        isinstance(loguniform(1e-4, 1).get_sampler(), LogUniform)   # True
    """

    def __init__(self, base: object = _MISSING):
        if base is not _MISSING:
            _warn_for_base()

    def __str__(self):
        return "LogUniform"


class Normal(Sampler):
    """Normal sampling with ``mean`` and ``sd`` (> 0).

    Example::

        randn(0.0, 2.0).get_sampler().sd   # 2.0
    """

    def __init__(self, mean: float = 0.0, sd: float = 0.0):
        self.mean = mean
        self.sd = sd
        if not sd > 0:
            raise ValueError(f"`sd` must be > 0, got sd={sd!r}")

    def __str__(self):
        return "Normal"


class Grid(Sampler):
    """Marker sampler for grid search (values are enumerated, never sampled).

    Example::

        Categorical([1, 2]).grid().is_grid()   # True
    """

    def sample(self, domain, config=None, size=1, random_state=None):
        return RuntimeError("Do not call `sample()` on grid.")

    def __str__(self):
        return "Grid"


class Float(Domain):
    """A float range; ``lower``/``upper`` ``None`` mean unbounded.

    Example::

        Float(1e-4, 1e-1).loguniform().sample(random_state=0)
    """

    class _Uniform(Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            items = _as_rng(random_state).uniform(domain.lower, domain.upper, size=size)
            return _one_or_many(domain, items)

    class _LogUniform(LogUniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            logmin, logmax = np.log(domain.lower), np.log(domain.upper)
            items = np.exp(_as_rng(random_state).uniform(logmin, logmax, size=size))
            return _one_or_many(domain, items)

    class _Normal(Normal):
        def sample(self, domain, config=None, size=1, random_state=None):
            items = _as_rng(random_state).normal(self.mean, self.sd, size=size)
            return _one_or_many(domain, items)

    default_sampler_cls = _Uniform

    def __init__(self, lower: Optional[float], upper: Optional[float]):
        self.lower = lower if lower is not None else float("-inf")
        self.upper = upper if upper is not None else float("inf")

    def cast(self, value):
        return float(value)

    def uniform(self):
        if not (isfinite(self.lower) and isfinite(self.upper)):
            raise ValueError(
                f"uniform sampling needs finite `lower` and `upper`, got "
                f"lower={self.lower}, upper={self.upper}"
            )
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: object = _MISSING):
        if base is not _MISSING:
            _warn_for_base()
        _check_log_bounds(self.lower, self.upper)
        new = copy(self)
        new.set_sampler(self._LogUniform())
        return new

    def normal(self, mean: float = 0.0, sd: float = 1.0):
        new = copy(self)
        new.set_sampler(self._Normal(mean, sd))
        return new

    def quantized(self, q: float):
        _check_q(q)
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            if isfinite(bound) and not isclose(bound / q, round(bound / q)):
                raise ValueError(
                    f"`{name}`={bound} is not a multiple of the quantization factor q={q}; "
                    "quantized bounds must be multiples of q"
                )
        new = copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def validate(self) -> None:
        super().validate()
        base = _unquantized(self.get_sampler())
        if isinstance(base, (Uniform, LogUniform)):
            _check_range(self.lower, self.upper)
        if isinstance(base, LogUniform):
            _check_log_bounds(self.lower, self.upper)

    def is_valid(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    """An integer range, ``lower`` inclusive, ``upper`` exclusive (inclusive when quantized, q > 1).

    Example::

        Integer(1, 10).uniform().sample(random_state=0)
    """

    class _Uniform(Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            items = _as_rng(random_state).integers(domain.lower, domain.upper, size=size)
            return _one_or_many(domain, items)

    class _LogUniform(LogUniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            logmin, logmax = np.log(domain.lower), np.log(domain.upper)
            items = np.exp(_as_rng(random_state).uniform(logmin, logmax, size=size))
            return _one_or_many(domain, np.floor(items).astype(int))

    default_sampler_cls = _Uniform

    def __init__(self, lower: int, upper: int):
        self.lower = lower
        self.upper = upper

    def cast(self, value):
        return int(value)

    def quantized(self, q: int):
        _check_q(q)
        new = copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def uniform(self):
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: object = _MISSING):
        if base is not _MISSING:
            _warn_for_base()
        _check_log_bounds(self.lower, self.upper)
        new = copy(self)
        new.set_sampler(self._LogUniform())
        return new

    def validate(self) -> None:
        super().validate()
        _check_range(self.lower, self.upper)
        sampler = self.get_sampler()
        if isinstance(_unquantized(sampler), LogUniform):
            _check_log_bounds(self.lower, self.upper)
        if isinstance(sampler, Quantized):
            q = sampler.q
            lo, hi = (
                sampler._grid_index(self.lower, np.ceil),
                sampler._grid_index(self.upper, np.floor),
            )
            if hi < lo:
                raise ValueError(
                    f"no multiple of q={q} lies between lower={self.lower} and "
                    f"upper={self.upper}; choose bounds that contain a multiple of q"
                )

    def is_valid(self, value: int) -> bool:
        return self.lower <= value <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Categorical(Domain):
    """A finite set of values.

    Example::

        Categorical(["relu", "tanh"]).uniform().sample(random_state=0)
    """

    class _Uniform(Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            # index, rather than choose from the list: numpy would coerce mixed types
            indices = _as_rng(random_state).choice(np.arange(0, len(domain.categories)), size=size)
            return _one_or_many(domain, [domain.categories[i] for i in indices])

    default_sampler_cls = _Uniform

    def __init__(self, categories: Sequence):
        self.categories = list(categories)

    def uniform(self):
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def grid(self):
        new = copy(self)
        new.set_sampler(Grid())
        return new

    def validate(self) -> None:
        if not self.categories:
            kind = "grid_search" if self.is_grid() else "choice"
            raise ValueError(
                f"{kind}() got no values; pass a non-empty list, e.g. {kind}([1, 2, 3])"
            )

    def __len__(self):
        return len(self.categories)

    def __getitem__(self, item):
        return self.categories[item]

    def is_valid(self, value: Any) -> bool:
        return value in self.categories

    @property
    def domain_str(self) -> str:
        return f"{self.categories}"


class Function(Domain):
    """A value computed by a user function, optionally from the rest of the config.

    Example::

        Function(lambda spec: spec.config.a * 2)
    """

    class _CallSampler(BaseSampler):
        def sample(self, domain, config=None, size=1, random_state=None):
            if domain.pass_config:
                items = [
                    domain.func(config[i] if isinstance(config, list) else config)
                    for i in range(size)
                ]
            else:
                items = [domain.func() for _ in range(size)]
            return _one_or_many(domain, items)

    default_sampler_cls = _CallSampler

    def __init__(self, func: Callable):
        if isinstance(func, dict) and "grid_search" in func:
            raise ValueError(
                f"sample_from({func!r}): grid_search cannot be used inside sample_from(); "
                "put tune.grid_search([...]) directly in `param_space`."
            )
        if not callable(func):
            raise TypeError(f"sample_from() needs a callable, got {func!r}")
        sig = signature(func)
        pass_config = True
        try:
            sig.bind({})
        except TypeError:
            pass_config = False
        if not pass_config:
            try:
                sig.bind()
            except TypeError as exc:
                raise ValueError(
                    "The function passed to sample_from() must be callable with either "
                    "0 or 1 parameters (the spec)."
                ) from exc
        self.pass_config = pass_config
        self.func = func

    def is_function(self) -> bool:
        return True

    def is_valid(self, value: Any) -> bool:
        return True

    @property
    def domain_str(self) -> str:
        return f"{self.func}()"


class Quantized(Sampler):
    """Wraps a sampler and rounds its values to multiples of ``q``.

    Example::

        quniform(0, 1, 0.25).get_sampler().q   # 0.25
    """

    def __init__(self, sampler: Sampler, q: Union[float, int]):
        if not sampler:
            raise ValueError("Quantized() expects a sampler instance")
        self.sampler = sampler
        self.q = q

    def get_sampler(self):
        return self.sampler

    def sample(self, domain, config=None, size=1, random_state=None):
        random_state = _as_rng(random_state)
        if isinstance(domain, Integer):
            # sample grid indices, so every multiple of q is equally likely
            lower_index = int(self._grid_index(domain.lower, np.ceil))
            upper_index = int(self._grid_index(domain.upper, np.floor))
            if upper_index < lower_index:
                raise ValueError(
                    f"There is no multiple of the quantization factor q={self.q} between "
                    f"the bounds {domain.lower} and {domain.upper} of this domain."
                )
            index_domain = copy(domain)
            index_domain.lower = lower_index
            # samplers are upper-exclusive, except for ``q == 1``
            index_domain.upper = upper_index + (0 if self.q == 1 else 1)
            indices = self.sampler.sample(index_domain, config, size, random_state=random_state)
            quantized = np.multiply(indices, self.q)
        else:
            quantized_domain = copy(domain)
            quantized_domain.lower = self._grid_index(domain.lower, np.ceil) * self.q
            quantized_domain.upper = self._grid_index(domain.upper, np.floor) * self.q
            values = self.sampler.sample(quantized_domain, config, size, random_state=random_state)
            quantized = np.round(np.divide(values, self.q)) * self.q
        if not isinstance(quantized, np.ndarray) or quantized.ndim == 0:
            return domain.cast(quantized)
        return [domain.cast(x) for x in quantized]

    def _grid_index(self, bound: float, round_fn: Callable[[float], float]) -> float:
        if not np.isfinite(bound):
            return bound
        scaled = bound / self.q
        nearest = round(scaled)
        if isclose(scaled, nearest):
            return nearest
        return round_fn(scaled)

    def __str__(self):
        return f"Quantized({self.sampler}, q={self.q})"


def _unquantized(sampler: Sampler) -> Sampler:
    return sampler.sampler if isinstance(sampler, Quantized) else sampler


def _check_q(q) -> None:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.number)) or not q > 0:
        raise ValueError(f"quantization `q` must be a number > 0, got q={q!r}")


def _check_range(lower, upper) -> None:
    if not lower < upper:
        raise ValueError(f"`lower` must be less than `upper`, got lower={lower!r}, upper={upper!r}")


def _check_log_bounds(lower, upper) -> None:
    if not lower > 0:
        raise ValueError(
            f"log-scale sampling needs `lower` > 0, got lower={lower!r} "
            "(allowed: 0 < lower < upper < inf). Did you pass a log-transformed value? "
            "Pass the untransformed one."
        )
    if not 0 < upper < float("inf"):
        raise ValueError(f"log-scale sampling needs 0 < `upper` < inf, got upper={upper!r}")
