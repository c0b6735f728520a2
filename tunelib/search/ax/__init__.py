"""``AxSearch`` (Ray's path ``ray.tune.search.ax``): not ported, see ``ax_search``.

Example::

    from tunelib.search.ax import AxSearch   # importable; creating one raises
"""

from tunelib.search.ax.ax_search import AxSearch

__all__ = ["AxSearch"]
