"""Nevergrad-backed searcher; ``nevergrad`` is imported only when ``NevergradSearch`` is created.

Example::

    import nevergrad as ng
    from tunelib.search.nevergrad import NevergradSearch
    search = NevergradSearch(optimizer=ng.optimizers.OnePlusOne, metric="loss", mode="min")
"""

from tunelib.search.nevergrad.nevergrad_search import NevergradSearch

__all__ = ["NevergradSearch"]
