"""Naming a parameter of a flattened search space in error messages (private)."""

from __future__ import annotations

from typing import Tuple

from tunelib.search._util import format_path


def flat_path_label(path: Tuple) -> str:
    """``("model/act",)`` (a flattened space's path) -> ``param_space["model"]["act"]``."""
    return format_path(tuple("/".join(map(str, path)).split("/")))
