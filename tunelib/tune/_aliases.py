"""Ray's paths to the engine's own packages: ``tunelib.tune.schedulers`` *is*
``tunelib.schedulers`` and ``tunelib.tune.search`` *is* ``tunelib.search``.

Ray users import ``ray.tune.schedulers.async_hyperband``, ``ray.tune.search.optuna``,
``ray.tune.search.sample`` and so on. tunelib keeps those packages in its core, with
Ray's submodule names (they are pure logic, below the façade). A meta-path finder answers
every import under the Ray path with the module object at the core path, so classes,
``isinstance`` checks and pickles are the same whichever path a script used, and a
searcher added under ``tunelib/search/<lib>/`` is at ``tunelib.tune.search.<lib>`` with
no file to add here. Names the core lacks fail to import, as they should.

Example::

    import tunelib.search.optuna
    import tunelib.tune.search.optuna

    assert tunelib.tune.search.optuna is tunelib.search.optuna
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Dict, Optional

# Ray's path (under tunelib.tune) -> the core package it is; every submodule follows
PACKAGE_ALIASES: Dict[str, str] = {
    "tunelib.tune.schedulers": "tunelib.schedulers",
    "tunelib.tune.search": "tunelib.search",
}


def aliased_name(fullname: str) -> Optional[str]:
    """The core module that the Ray-path module ``fullname`` is, or None.

    >>> aliased_name("tunelib.tune.search.optuna")
    'tunelib.search.optuna'
    """
    for alias, target in PACKAGE_ALIASES.items():
        if fullname == alias or fullname.startswith(alias + "."):
            return target + fullname[len(alias):]
    return None


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tunelib.tune.<pkg>...`` as the already-importable ``tunelib.<pkg>...``."""

    def __init__(self):
        self._own_specs: Dict[str, importlib.machinery.ModuleSpec] = {}  # by alias name

    def find_spec(self, fullname, path=None, target=None):
        name = aliased_name(fullname)
        if name is None:
            return None
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # a parent package of the core path is missing
            return None
        if found is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, is_package=found.submodule_search_locations is not None)

    def create_module(self, spec):
        module = importlib.import_module(aliased_name(spec.name))
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system has just set the alias spec on the shared module: give the
        # module its own back (reload, pickling and tools read it)
        module.__spec__ = self._own_specs.pop(module.__spec__.name)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once; importing this module does it):
    the core packages' own ``__path__`` would otherwise load a second copy of each
    submodule under the Ray path."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


install()
