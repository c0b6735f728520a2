"""``tunelib.tune.logger``: the path of Ray's ``ray.tune.logger``.

Every trial already writes Ray's ``result.json``, ``progress.csv`` and ``params.json``
itself (and TensorBoard events with tensorboardX), whatever the callbacks. Ray's logger
callback classes (``LoggerCallback``, ``CSVLoggerCallback``, ``JsonLoggerCallback``,
``TBXLoggerCallback``) and ``pretty_print`` are not provided yet, so importing them fails
rather than returning look-alikes. Example::

    from tunelib.tune import logger   # the module exists
"""

__all__: list = []
