"""Ray 2.60's on-disk layout, owned here and nowhere else.

What an experiment directory holds, how its files are named, how results are encoded
(JSON lines, Ray's flattened ``a/b`` keys) and how a trial's state is written to and read
from ``experiment_state-<session>.json``. Writers (``_trial_writer``, the controller),
readers (``_reader``, ``analysis``, ``resume``) and the Prefect recorder import these
names; none defines its own. Formats are checked against files Ray itself wrote
(``shared/fixtures``). Example::

    from tunelib import _layout

    _layout.flatten_dict({"a": {"b": 1}, "c": 2})      # {"c": 2, "a/b": 1}
    _layout.checkpoint_dir_name(3)                      # "checkpoint_000003"
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from typing import Any, Dict, Optional

# --------------------------------------------------------------------------- file names
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
PARAMS_FILE = "params.json"
PARAMS_PKL = "params.pkl"
ERROR_FILE = "error.txt"
ERROR_PKL = "error.pkl"
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE_PREFIX = "experiment_state-"
EXPERIMENT_STATE_PATTERN = "experiment_state-*.json"
CHECKPOINT_PREFIX = "checkpoint_"
PBT_GLOBAL_FILE = "pbt_global.txt"
DELIMITER = "/"


def experiment_state_file(session_str: str) -> str:
    """``experiment_state-<session>.json``: the newest of them is the experiment's state."""
    return f"{EXPERIMENT_STATE_PREFIX}{session_str}.json"


def pbt_policy_file(trial_id: str) -> str:
    return f"pbt_policy_{trial_id}.txt"


def checkpoint_dir_name(index: int) -> str:
    """``checkpoint_000003`` for index 3."""
    return f"{CHECKPOINT_PREFIX}{index:06d}"


def is_checkpoint_dir_name(name: str) -> bool:
    return name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit()


def session_str(now: Optional[float] = None) -> str:
    """Ray's date stamp in experiment and trial names: ``2026-11-29_11-50-37``."""
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))


# --------------------------------------------------------------------------- dir names
_UNSAFE_IN_DIRNAME = re.compile(r'[/()<>:"\\|?*]')


def safe_dirname(name: str) -> str:
    """Characters Ray replaces in trial dir names (``/``, brackets, quotes...) become ``_``."""
    return _UNSAFE_IN_DIRNAME.sub("_", name)


def default_trial_dirname(trial_name: str, experiment_tag: str, max_len: int = 130) -> str:
    """Ray's trial dir name: ``<trial name>_<experiment tag>[:max_len]_<date>``
    (``TUNE_MAX_LEN_IDENTIFIER`` sets ``max_len``)."""
    return safe_dirname(f"{f'{trial_name}_{experiment_tag}'[:max_len]}_{session_str()}")


# --------------------------------------------------------------------------- flat keys


def flatten_dict(dt: Dict, delimiter: str = DELIMITER, prevent_delimiter: bool = False,
                 flatten_list: bool = False) -> Dict:
    """Flatten nested dicts into ``{"a/b": value}``, exactly as Ray's ``flatten_dict``:
    top-level plain keys keep their place, nested ones follow; empty dicts vanish; lists
    stay whole unless ``flatten_list``.

    >>> flatten_dict({"a": {"b": 1}, "c": 2})
    {'c': 2, 'a/b': 1}
    """

    def check(key: Any) -> None:
        if prevent_delimiter and delimiter in str(key):
            raise ValueError(
                f"Found delimiter `{delimiter}` in key `{key}` when flattening the search "
                f"space. Please avoid `{delimiter}` in parameter names."
            )

    dt = copy.copy(dt)
    for key in dt:
        check(key)
    nested = (dict, list) if flatten_list else dict
    while any(isinstance(v, nested) for v in dt.values()):
        add, remove = {}, []
        for key, value in dt.items():
            if isinstance(value, dict):
                for subkey, v in value.items():
                    check(subkey)
                    add[delimiter.join([str(key), str(subkey)])] = v
                remove.append(key)
            elif flatten_list and isinstance(value, list):
                for i, v in enumerate(value):
                    add[delimiter.join([str(key), str(i)])] = v
                remove.append(key)
        dt.update(add)
        for k in remove:
            del dt[k]
    return dt


def unflatten_dict(dt: Dict[str, Any], delimiter: str = DELIMITER) -> Dict[str, Any]:
    """Inverse of :func:`flatten_dict` (lists are not rebuilt), as Ray's."""
    out: Dict[str, Any] = {}
    for key, val in dt.items():
        path = key.split(delimiter)
        item = out
        for k in path[:-1]:
            item = item.setdefault(k, {})
            if not isinstance(item, dict):
                raise TypeError(f"Cannot unflatten key '{key}': its parent '{k}' is not a dict.")
        item[path[-1]] = val
    return out


def unflattened_lookup(flat_key: str, lookup: Any, delimiter: str = DELIMITER, **kwargs) -> Any:
    """Look ``"a/0/b"`` up as ``lookup["a"][0]["b"]`` (or ``lookup["a/0/b"]``); Ray's helper.
    Raises KeyError unless a ``default=`` is given."""
    if isinstance(lookup, dict) and flat_key in lookup:
        return lookup[flat_key]
    base = lookup
    for key in flat_key.split(delimiter):
        try:
            if isinstance(base, dict):
                base = base[key]
            elif isinstance(base, (list, tuple)):
                base = base[int(key)]
            else:
                raise KeyError(key)
        except (KeyError, IndexError, ValueError):
            if "default" in kwargs:
                return kwargs["default"]
            raise KeyError(flat_key) from None
    return base


# --------------------------------------------------------------------------- JSON


class JSONEncoder(json.JSONEncoder):
    """Results and configs as Ray writes them: numpy scalars as numbers, arrays as lists,
    anything else as its repr (a trial's log must never break on a value)."""

    def default(self, o):
        if hasattr(o, "item") and callable(o.item):
            try:
                return o.item()
            except (TypeError, ValueError):
                pass
        if hasattr(o, "tolist"):
            return o.tolist()
        return repr(o)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with :class:`JSONEncoder` (one line unless ``indent`` is given)."""
    return json.dumps(obj, cls=JSONEncoder, **kwargs)


def to_json_value(value: Any, finite: bool = False) -> Any:
    """A JSON-safe copy of ``value`` (what :func:`dumps` would write, as Python objects).

    ``finite=True`` also turns NaN and infinities into None, for APIs (Prefect's) whose
    JSON has no NaN.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if not finite or math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v, finite) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v, finite) for v in value]
    return to_json_value(JSONEncoder().default(value), finite) if _is_scalar_like(value) \
        else repr(value)


def _is_scalar_like(value: Any) -> bool:
    """numpy scalars and arrays (``item`` / ``tolist``): encoded as numbers and lists."""
    return callable(getattr(value, "item", None)) or callable(getattr(value, "tolist", None))
