"""Small dict and file helpers shared by the search modules (private)."""

from __future__ import annotations

import copy
import glob
import os
import uuid
from typing import Any, Dict, Optional, Tuple

import cloudpickle

from tunelib._layout import flatten_dict, unflatten_dict  # noqa: F401 - the search modules' names


def merge_dicts(d1: Dict, d2: Dict) -> Dict:
    """Return a deep copy of ``d1`` deep-updated with ``d2``."""
    merged = copy.deepcopy(d1)
    _deep_update(merged, d2)
    return merged


def _deep_update(original: Dict, new: Dict) -> Dict:
    for k, v in new.items():
        if isinstance(original.get(k), dict) and isinstance(v, dict):
            _deep_update(original[k], v)
        else:
            original[k] = v
    return original


def format_path(path: Tuple) -> str:
    """``("model", "lr")`` -> ``param_space["model"]["lr"]`` for error messages."""
    return "param_space" + "".join(f"[{p}]" if isinstance(p, int) else f'["{p}"]' for p in path)


def atomic_save(state: Any, dirpath: str, file_name: str) -> None:
    """Pickle ``state`` to ``dirpath/file_name`` atomically (write, then rename)."""
    os.makedirs(dirpath, exist_ok=True)
    tmp = os.path.join(dirpath, f".{uuid.uuid4()}-tmp-{file_name}")
    with open(tmp, "wb") as f:
        cloudpickle.dump(state, f)
    os.replace(tmp, os.path.join(dirpath, file_name))


def load_newest(dirpath: str, pattern: str) -> Optional[Any]:
    """Unpickle the last (by name, i.e. newest session) file matching ``pattern``."""
    paths = glob.glob(os.path.join(glob.escape(dirpath), pattern))
    if not paths:
        return None
    with open(max(paths), "rb") as f:
        return cloudpickle.load(f)


def has_file(dirpath: str, pattern: str) -> bool:
    """Whether ``dirpath`` holds a file matching ``pattern``."""
    return bool(glob.glob(os.path.join(glob.escape(dirpath), pattern)))
