"""``tunelib.tune.error``: Ray's ``ray.tune.error`` (defined in ``tunelib.error``).

Example::

    from tunelib.tune.error import TuneError
"""

from tunelib.error import TuneError

__all__ = ["TuneError"]
