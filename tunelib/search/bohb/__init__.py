"""BOHB searcher (hpbandster + ConfigSpace, imported when ``TuneBOHB`` is created).

Example::

    from tunelib.search.bohb import TuneBOHB
    search = TuneBOHB(metric="loss", mode="min", seed=1)
"""

from tunelib.search.bohb.bohb_search import TuneBOHB

__all__ = ["TuneBOHB"]
