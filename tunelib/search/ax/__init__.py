"""Ax-backed searcher; ``ax`` is imported only when ``AxSearch`` is created.

Example::

    from tunelib.search.ax import AxSearch
    search = AxSearch(metric="loss", mode="min", random_seed=7)
"""

from tunelib.search.ax.ax_search import AxSearch

__all__ = ["AxSearch"]
