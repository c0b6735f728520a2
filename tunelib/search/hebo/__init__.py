"""``HEBOSearch`` (Ray's path ``ray.tune.search.hebo``): not ported, see ``hebo_search``.

Example::

    from tunelib.search.hebo import HEBOSearch   # importable; creating one raises
"""

from tunelib.search.hebo.hebo_search import HEBOSearch

__all__ = ["HEBOSearch"]
