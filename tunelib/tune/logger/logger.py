"""Ray's ``ray.tune.logger.logger`` path (defined in ``tunelib._loggers``).

Example::

    from tunelib.tune.logger.logger import LoggerCallback
"""

from tunelib._loggers import LoggerCallback, pretty_print

__all__ = ["LoggerCallback", "pretty_print"]
