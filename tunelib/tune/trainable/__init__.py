"""``tunelib.tune.trainable``: Ray's ``ray.tune.trainable`` (``Trainable`` lives in
``tunelib.trainable``, the wrappers in ``tunelib.tune._wrappers``).

Example::

    from tunelib.tune.trainable import Trainable, with_parameters
"""

from tunelib.trainable import Trainable
from tunelib.tune._wrappers import with_parameters

__all__ = ["Trainable", "with_parameters"]
