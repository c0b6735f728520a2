"""``tunelib.tune.logger``: Ray's ``ray.tune.logger`` (defined in ``tunelib._loggers`` and
``tunelib._tensorboard``).

Every trial writes Ray's ``result.json``, ``progress.csv`` and ``params.json`` itself, so
``JsonLoggerCallback`` and ``CSVLoggerCallback`` are accepted but write nothing twice;
``TBXLoggerCallback`` writes TensorBoard event files (tensorboardX, the ``tensorboard``
extra) and is added by default when tensorboardX is installed. Example::

    from tunelib.tune.logger import TBXLoggerCallback, pretty_print

    print(pretty_print({"loss": 0.1, "training_iteration": 3}))
"""

from tunelib._loggers import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, pretty_print
from tunelib._tensorboard import TBXLoggerCallback

__all__ = ["CSVLoggerCallback", "JsonLoggerCallback", "LoggerCallback", "TBXLoggerCallback",
           "pretty_print"]
