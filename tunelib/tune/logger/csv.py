"""Ray's ``ray.tune.logger.csv`` path (defined in ``tunelib._loggers``).

Example::

    from tunelib.tune.logger.csv import CSVLoggerCallback
"""

from tunelib._loggers import CSVLoggerCallback

__all__ = ["CSVLoggerCallback"]
