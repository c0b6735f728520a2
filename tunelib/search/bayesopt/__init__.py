"""BayesOpt-backed searcher; ``bayes_opt`` is imported only when ``BayesOptSearch`` is created.

Example::

    from tunelib.search.bayesopt import BayesOptSearch
    search = BayesOptSearch(metric="loss", mode="min", random_state=42)
"""

from tunelib.search.bayesopt.bayesopt_search import BayesOptSearch

__all__ = ["BayesOptSearch"]
