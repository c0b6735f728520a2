"""Optuna-backed searcher; ``optuna`` is imported only when ``OptunaSearch`` is created.

Example::

    from tunelib.search.optuna import OptunaSearch
    search = OptunaSearch(metric="loss", mode="min", seed=0)
"""

from tunelib.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
