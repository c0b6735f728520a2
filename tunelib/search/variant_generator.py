"""Resolve a ``param_space`` into concrete configs: grid expansion, sampling, ``sample_from``.

Same algorithm and output as Ray's ``ray.tune.search.variant_generator``; paths here are
relative to the param space (Ray's carry a leading ``"config"``).

Example::

    from tunelib.search.variant_generator import generate_variants, format_vars
    for resolved_vars, config in generate_variants({"lr": grid_search([0.1, 0.01])}):
        print(format_vars(resolved_vars), config)        # lr=0.1000 {'lr': 0.1}
"""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Mapping
from typing import Any, Dict, Generator, Iterable, List, Optional, Tuple

import numpy

from tunelib.search._util import format_path
from tunelib.search.domain import Categorical, Domain, Function, RandomState, _as_rng

logger = logging.getLogger(__name__)

_STANDARD_IMPORTS = {"random": random, "np": numpy}
_MAX_RESOLUTION_PASSES = 20


class RecursiveDependencyError(Exception):
    """A ``sample_from`` function read a value that is not resolved yet (retried later).

    Example::

        raise RecursiveDependencyError("`a` recursively depends on Float(0, 1)")
    """


def grid_search(values: Iterable) -> Dict[str, List]:
    """Try every one of ``values``; several grids combine as a cartesian product.

    ``num_samples`` repeats the whole grid: 2 grids of 2 and 3 values with
    ``num_samples=4`` give 24 trials.

    Example::

        param_space = {"x": tune.grid_search([10, 20]), "y": tune.grid_search(["a", "b", "c"])}
    """
    return {"grid_search": list(values)}


def generate_variants(
    unresolved_spec: Dict,
    constant_grid_search: bool = False,
    random_state: RandomState = None,
) -> Generator[Tuple[Dict, Dict], None, None]:
    """Yield ``(resolved_vars, spec)`` for every grid point of ``unresolved_spec``.

    ``resolved_vars`` maps each sampled/grid parameter's path tuple to its value;
    ``spec`` is the fully resolved copy. Random values are drawn once per grid point
    (or once for the whole grid when ``constant_grid_search``).

    Example::

        list(generate_variants({"a": grid_search([1, 2]), "b": uniform(0, 1)}, random_state=0))
    """
    validate_space(unresolved_spec)
    rng = _as_rng(random_state)
    for resolved_vars, spec in _generate_variants_internal(
        unresolved_spec, constant_grid_search=constant_grid_search, random_state=rng
    ):
        yield resolved_vars, spec


def format_vars(resolved_vars: Dict) -> str:
    """Format resolved variables as Ray's experiment tag: ``"lr=0.0100,wd=0.0004"``.

    Keys are path tuples; only their last element is shown, floats with 4 decimals,
    other characters outside ``[a-zA-Z0-9_-]`` replaced by ``_``.

    Example::

        format_vars({("opt", "lr"): 0.01, ("act",): "relu"})   # 'act=relu,lr=0.0100'
    """
    return ",".join(
        f"{_clean_value(k[-1])}={_clean_value(v)}" for k, v in _sorted_items(resolved_vars)
    )


def _sorted_items(d: Dict) -> List:
    try:
        return sorted(d.items())
    except TypeError:  # mixed key types (e.g. list indices next to names)
        return sorted(d.items(), key=lambda kv: tuple(str(p) for p in kv[0]))


def _clean_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", str(value)).strip("_")


def flatten_resolved_vars(resolved_vars: Dict) -> Dict[str, Any]:
    """``{("a", "b"): v}`` -> ``{"a/b": v}`` (a trial's ``evaluated_params``).

    Example::

        flatten_resolved_vars({("model", "lr"): 0.1})   # {'model/lr': 0.1}
    """
    return {"/".join(str(p) for p in path): value for path, value in resolved_vars.items()}


def resolve_nested_dict(nested_dict: Dict) -> Dict[Tuple, Any]:
    """Flatten a nested dict into ``{path_tuple: value}``, as input to :func:`format_vars`.

    Example::

        resolve_nested_dict({"a": {"b": 1}})   # {('a', 'b'): 1}
    """
    res = {}
    for k, v in nested_dict.items():
        if isinstance(v, dict):
            for k_, v_ in resolve_nested_dict(v).items():
                res[(k,) + k_] = v_
        else:
            res[(k,)] = v
    return res


def parse_spec_vars(spec: Dict) -> Tuple[List[Tuple[Tuple, Any]], List, List]:
    """Split a spec into ``(resolved_vars, domain_vars, grid_vars)`` lists of ``(path, x)``.

    Example::

        parse_spec_vars({"a": 1, "b": uniform(0, 1), "c": grid_search([1, 2])})
    """
    resolved, unresolved = _split_resolved_unresolved_values(spec)
    grid_vars, domain_vars = [], []
    for path, value in unresolved.items():
        (grid_vars if value.is_grid() else domain_vars).append((path, value))
    grid_vars.sort(key=lambda pv: _path_key(pv[0]))
    return list(resolved.items()), domain_vars, grid_vars



def flat_spec_vars(spec: Dict, space_name: str) -> Tuple[List, List, List]:
    """``parse_spec_vars`` of ``spec`` flattened to ``"a/b"`` keys (Ray's order), for a
    searcher converting it into its library's space; a grid search is refused with the
    parameter's path (``space_name``: "a Nevergrad search space", ...)."""
    from tunelib._layout import flatten_dict

    _, _, grid_vars = parse_spec_vars(spec)
    if grid_vars:
        raise ValueError(
            f"{format_path(grid_vars[0][0])}: Grid search parameters cannot be "
            f"automatically converted to {space_name}."
        )
    return parse_spec_vars(flatten_dict(spec, prevent_delimiter=True))

def _path_key(path: Tuple) -> Tuple:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def validate_space(spec: Dict, _prefix: Tuple = ()) -> None:
    """Raise ``ValueError`` naming the parameter path if some domain cannot be sampled.

    Example::

        validate_space({"model": {"lr": Float(1, 0).uniform()}})
        # ValueError: param_space["model"]["lr"]: `lower` must be less than `upper` ...
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"`param_space` must be a dict, got {type(spec).__name__}: {spec!r}")
    _, unresolved = _split_resolved_unresolved_values(spec)
    for path, domain in unresolved.items():
        full = _prefix + path
        try:
            domain.validate()
        except ValueError as exc:
            raise ValueError(f"{format_path(full)}: {exc}") from None
        if isinstance(domain, Categorical):  # grid values and choices may nest spaces
            for i, category in enumerate(domain.categories):
                if isinstance(category, Mapping):
                    validate_space(category, full + (i,))


def count_variants(spec: Dict, num_samples: int = 1, presets: Optional[List[Dict]] = None) -> int:
    """Number of configs ``spec`` yields for ``num_samples``, after ``presets`` replace samples.

    Example::

        count_variants({"a": grid_search([1, 2, 3])}, num_samples=2)   # 6
    """
    presets = presets or []
    total = 0
    for preset in presets:
        preset_spec = copy.deepcopy(spec)
        _deep_update(preset_spec, preset)
        total += _count_spec_samples(preset_spec)
    remaining = num_samples - len(presets)
    if remaining > 0:
        total += _count_spec_samples(spec) * remaining
    return total


def _count_spec_samples(spec: Dict) -> int:
    _, _, grid_vars = parse_spec_vars(spec)
    count = 1
    for _, domain in grid_vars:
        count *= len(domain.categories)
    return count


def _deep_update(d: Dict, u: Mapping) -> Dict:
    for k, v in u.items():
        if isinstance(v, Mapping) and isinstance(d.get(k), Mapping) and not _is_special(d[k]):
            d[k] = _deep_update(d.get(k, {}), v)
        else:
            d[k] = v
    return d


def _is_special(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and ("grid_search" in v or "eval" in v)


def _generate_variants_internal(
    spec: Dict, constant_grid_search: bool = False, random_state: RandomState = None
) -> Generator[Tuple[Dict, Dict], None, None]:
    spec = copy.deepcopy(spec)
    _, domain_vars, grid_vars = parse_spec_vars(spec)
    if not domain_vars and not grid_vars:
        yield {}, spec
        return

    to_resolve = domain_vars
    all_resolved = True
    constant_vars: Dict = {}
    if constant_grid_search:
        # sample random variables first, and keep them over the whole grid
        all_resolved, constant_vars = _resolve_domain_vars(
            spec, domain_vars, allow_fail=True, random_state=random_state
        )
        if not all_resolved:
            to_resolve = [(r, d) for r, d in to_resolve if r not in constant_vars]
    resolved_vars = constant_vars
    for resolved_spec in _grid_search_generator(spec, grid_vars):
        if not constant_grid_search or not all_resolved:
            _, pass_vars = _resolve_domain_vars(
                resolved_spec, to_resolve, random_state=random_state
            )
            resolved_vars = {**constant_vars, **pass_vars}
        # grid values and sampled values may themselves hold search spaces
        for resolved, variant in _generate_variants_internal(
            resolved_spec, constant_grid_search=constant_grid_search, random_state=random_state
        ):
            variant_vars = resolved_vars.copy()
            for path, _ in grid_vars:
                variant_vars[path] = _get_value(variant, path)
            for k, v in resolved.items():
                if k in variant_vars and v != variant_vars[k] and _is_resolved(variant_vars[k]):
                    raise ValueError(
                        f"{format_path(k)} could not be unambiguously resolved to a single "
                        "value. Consider simplifying your configuration."
                    )
                variant_vars[k] = v
            yield variant_vars, variant


def get_preset_variants(
    spec: Dict,
    config: Dict,
    constant_grid_search: bool = False,
    random_state: RandomState = None,
) -> Generator[Tuple[Dict, Dict], None, None]:
    """Variants of ``spec`` with the values of ``config`` (a point to evaluate) fixed.

    Example::

        list(get_preset_variants({"a": uniform(0, 1), "b": grid_search([1, 2])}, {"a": 0.5}))
    """
    spec = copy.deepcopy(spec)
    resolved, _, _ = parse_spec_vars(config)
    for path, val in resolved:
        try:
            domain = _get_value(spec, path)
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"points_to_evaluate: key `{'/'.join(map(str, path))}` is not in the search "
                f"space; add {format_path(path)} to `param_space`."
            ) from None
        if isinstance(domain, dict):
            domain = Categorical(domain["grid_search"]) if "grid_search" in domain else None
        if isinstance(domain, Domain):
            if not domain.is_valid(val):
                logger.warning(
                    f"Pre-set value `{val}` is not within valid values of parameter "
                    f"{format_path(path)}: {domain.domain_str}"
                )
        elif domain is not None and domain != val:
            logger.warning(
                f"Pre-set value `{val}` is not equal to the value of parameter "
                f"{format_path(path)}: {domain}"
            )
        assign_value(spec, path, val)
    return _generate_variants_internal(
        spec, constant_grid_search=constant_grid_search, random_state=random_state
    )


def assign_value(spec: Dict, path: Tuple, value: Any) -> None:
    """Set ``spec[path[0]][path[1]]... = value``, rebuilding tuples on the way.

    Example::

        d = {"a": {"b": 1}}; assign_value(d, ("a", "b"), 2)   # d == {"a": {"b": 2}}
    """
    parent_spec, parent_key = None, None
    for k in path[:-1]:
        parent_spec, parent_key = spec, k
        spec = spec[k]
    key = path[-1]
    if not isinstance(spec, tuple):
        spec[key] = value
    elif parent_spec is None:
        raise ValueError("Cannot assign value to a tuple.")
    else:
        parent_spec[parent_key] = spec[:key] + (value,) + spec[key + 1 :]


def _get_value(spec: Any, path: Tuple) -> Any:
    for k in path:
        spec = spec[k]
    return spec


def _resolve_domain_vars(
    spec: Dict,
    domain_vars: List[Tuple[Tuple, Domain]],
    allow_fail: bool = False,
    random_state: RandomState = None,
) -> Tuple[bool, Dict]:
    resolved: Dict = {}
    error: Optional[Exception] = None
    for _ in range(_MAX_RESOLUTION_PASSES):
        error = None
        for path, domain in domain_vars:
            if path in resolved:
                continue
            try:
                value = domain.sample(_SpecGuard(spec), random_state=random_state)
            except RecursiveDependencyError as exc:
                error = exc
                continue
            except Exception as exc:
                raise ValueError(
                    f"{format_path(path)}: failed to sample {domain!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if domain.is_function() and _contains_grid(value):
                raise ValueError(
                    f"{format_path(path)}: a sample_from() function returned a grid_search "
                    f"({value!r}); grid_search is only allowed directly in `param_space`, "
                    "not inside sample_from()."
                )
            assign_value(spec, path, value)
            resolved[path] = value
        if error is None:
            break
    if error is not None:
        if not allow_fail:
            raise ValueError(
                f"Could not resolve the search space: {error}. sample_from() functions "
                "must not depend on each other in a cycle."
            ) from error
        return False, resolved
    return True, resolved


def _contains_grid(value: Any) -> bool:
    if isinstance(value, dict):
        return "grid_search" in value or any(_contains_grid(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_grid(v) for v in value)
    return isinstance(value, Domain) and value.is_grid()


def _grid_search_generator(unresolved_spec: Dict, grid_vars: List) -> Generator[Dict, None, None]:
    if not grid_vars:
        yield unresolved_spec
        return
    # the first grid variable (in path order) changes fastest, as in Ray
    value_indices = [0] * len(grid_vars)
    while True:
        spec = copy.deepcopy(unresolved_spec)
        for i, (path, values) in enumerate(grid_vars):
            assign_value(spec, path, values[value_indices[i]])
        yield spec
        i = 0
        while i < len(grid_vars):
            value_indices[i] += 1
            if value_indices[i] < len(grid_vars[i][1]):
                break
            value_indices[i] = 0
            i += 1
        if i == len(grid_vars):
            return


def _is_resolved(v: Any) -> bool:
    return _try_resolve(v)[0]


def _try_resolve(v: Any) -> Tuple[bool, Any]:
    if isinstance(v, Domain):
        return False, v
    if isinstance(v, dict) and len(v) == 1 and "eval" in v:
        expr = v["eval"]
        return False, Function(lambda spec: eval(expr, _STANDARD_IMPORTS, {"spec": spec}))
    if isinstance(v, dict) and len(v) == 1 and "grid_search" in v:
        return False, Categorical(v["grid_search"]).grid()
    return True, v


def _split_resolved_unresolved_values(spec: Dict) -> Tuple[Dict[Tuple, Any], Dict[Tuple, Any]]:
    resolved_vars: Dict[Tuple, Any] = {}
    unresolved_vars: Dict[Tuple, Any] = {}
    for k, v in spec.items():
        resolved, v = _try_resolve(v)
        if not resolved:
            unresolved_vars[(k,)] = v
        elif isinstance(v, dict):
            children_r, children_u = _split_resolved_unresolved_values(v)
            resolved_vars.update({(k,) + p: x for p, x in children_r.items()})
            unresolved_vars.update({(k,) + p: x for p, x in children_u.items()})
        elif isinstance(v, (list, tuple)):
            for i, elem in enumerate(v):
                children_r, children_u = _split_resolved_unresolved_values({i: elem})
                resolved_vars.update({(k,) + p: x for p, x in children_r.items()})
                unresolved_vars.update({(k,) + p: x for p, x in children_u.items()})
        else:
            resolved_vars[(k,)] = v
    return resolved_vars, unresolved_vars


def has_unresolved_values(spec: Dict) -> bool:
    """Whether ``spec`` still holds a Domain, grid_search or eval entry.

    Example::

        has_unresolved_values({"lr": uniform(0, 1)})   # True
    """
    return bool(_split_resolved_unresolved_values(spec)[1])


class _SpecGuard(dict):
    """What a ``sample_from`` function receives: the config so far.

    Ray passes the experiment spec, so functions read ``spec.config.a`` or
    ``spec["config"]["a"]``; reading ``config["a"]`` directly works too. Reading a value
    that is not resolved yet raises ``RecursiveDependencyError`` (retried next pass).
    """

    def __getitem__(self, key):
        if key == "config" and not dict.__contains__(self, "config"):
            return self
        value = dict.__getitem__(self, key)
        if not _is_resolved(value):
            raise RecursiveDependencyError(f"`{key}` recursively depends on {value}")
        return _SpecGuard(value) if isinstance(value, dict) else value

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None
