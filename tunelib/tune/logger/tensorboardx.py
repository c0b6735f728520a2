"""Ray's ``ray.tune.logger.tensorboardx`` path (defined in ``tunelib._tensorboard``).

Example::

    from tunelib.tune.logger.tensorboardx import TBXLoggerCallback
"""

from tunelib._tensorboard import TBXLoggerCallback

__all__ = ["TBXLoggerCallback"]
