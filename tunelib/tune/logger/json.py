"""Ray's ``ray.tune.logger.json`` path (defined in ``tunelib._loggers``).

Example::

    from tunelib.tune.logger.json import JsonLoggerCallback
"""

from tunelib._loggers import JsonLoggerCallback

__all__ = ["JsonLoggerCallback"]
