"""HyperOpt-backed searcher; ``hyperopt`` is imported only when ``HyperOptSearch`` is created.

Example::

    from tunelib.search.hyperopt import HyperOptSearch
    search = HyperOptSearch(metric="loss", mode="min", random_state_seed=0)
"""

from tunelib.search.hyperopt.hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
