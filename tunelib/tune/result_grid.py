"""``tunelib.tune.result_grid``: Ray's ``ray.tune.result_grid`` (defined in ``tunelib.result_grid``).

Example::

    from tunelib.tune.result_grid import ResultGrid
"""

from tunelib.result_grid import ResultGrid

__all__ = ["ResultGrid"]
