"""``tunelib.tune.utils``: Ray's ``ray.tune.utils`` helpers.

The flat-key helpers are the engine's own (``tunelib._layout``, the one definition of
Ray's ``a/b`` keys); the rest are in ``tunelib.tune.utils.util``. Example::

    from tunelib.tune.utils import flatten_dict, unflattened_lookup, wait_for_gpu

    flatten_dict({"a": {"b": 1}})                   # {"a/b": 1}
    unflattened_lookup("a/b", {"a": {"b": 1}})      # 1
"""

from tunelib._layout import flatten_dict, unflattened_lookup
from tunelib.tune.utils.util import (
    date_str,
    deep_update,
    diagnose_serialization,
    merge_dicts,
    validate_save_restore,
    wait_for_gpu,
)

__all__ = [
    "deep_update", "date_str", "flatten_dict", "merge_dicts", "unflattened_lookup",
    "validate_save_restore", "diagnose_serialization", "wait_for_gpu",
]
