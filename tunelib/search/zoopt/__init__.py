"""ZOOpt-backed searcher; ``zoopt`` is imported only when ``ZOOptSearch`` is created.

Example::

    from tunelib.search.zoopt import ZOOptSearch
    search = ZOOptSearch(algo="Asracos", budget=20, metric="loss", mode="min")
"""

from tunelib.search.zoopt.zoopt_search import ZOOptSearch

__all__ = ["ZOOptSearch"]
