"""Which checkpoints ``CheckpointConfig`` keeps, and which of them are the trial's best.

Ray's ``_CheckpointManager`` (``ray/train/_internal/checkpoint_manager.py``), as pure
functions over a trial's kept checkpoints in registration order (oldest first):

- a checkpoint whose reported metrics hold ``checkpoint_score_attribute`` as a top-level
  key is inserted into a list kept worst first, after every checkpoint that does not score
  higher (so on a tie the newer one counts as better); any other checkpoint is appended
  at the end. Ray looks the key up unflattened for this test but scores flattened, so a
  nested attribute (``"a/b"``) ranks by recency, as it does in Ray;
- with ``num_to_keep``, every checkpoint below the best ``num_to_keep`` is deleted, except
  the latest one, which a retry restores from;
- ``Result.best_checkpoints`` lists the best ``num_to_keep`` (all without it), worst first:
  the latest is listed only when it is among them.

Replaying the insertions over the surviving checkpoints gives Ray's list, so a trial's
state needs no more than its kept checkpoints and their metrics. Decided once, where
checkpoints are persisted (the trial writer); the experiment state records the best list.

Example::

    kept = [("checkpoint_000002", {"loss": 0}), ("checkpoint_000003", {"loss": 1}),
            ("checkpoint_000004", {"loss": 2})]
    cfg = CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                           checkpoint_score_order="min")
    [name for name, _ in best_checkpoints(kept, cfg)]  # ["checkpoint_000003", "checkpoint_000002"]
"""

from __future__ import annotations

import bisect
import logging
import math
import numbers
from typing import Any, Dict, List, Optional, Set, Tuple

from tunelib._layout import flatten_dict

logger = logging.getLogger(__name__)

Kept = List[Tuple[str, Dict[str, Any]]]   # (checkpoint dir name, its metrics), oldest first

_MISSING = object()
_WORST = (False, -math.inf)
_warned: Set[str] = set()


def score_key(metrics: Dict[str, Any], checkpoint_config) -> Tuple[bool, float]:
    """Ray's ``_get_checkpoint_score``: ``(is a number, value)``, larger is better.

    The value is ``checkpoint_score_attribute`` (flattened lookup), negated for "min"; a
    missing attribute counts as ``-inf`` before the sign (so as the best under "min",
    as in Ray). NaN ranks below everything. A value that is not a number ranks with NaN
    (Ray fails to register such a checkpoint and logs it).
    """
    attr = checkpoint_config.checkpoint_score_attribute
    value = metrics.get(attr, _MISSING)
    if value is _MISSING:
        value = flatten_dict(metrics).get(attr, -math.inf)
    sign = 1.0 if checkpoint_config.checkpoint_score_order == "max" else -1.0
    if not isinstance(value, numbers.Number):
        if attr not in _warned:
            _warned.add(attr)
            logger.error(
                "CheckpointConfig(checkpoint_score_attribute=%r) must name a number; a "
                "checkpoint reported %r, so it ranks last.", attr, value)
        return _WORST
    score = sign * float(value)
    return _WORST if math.isnan(score) else (True, score)


def ranked(kept: Kept, checkpoint_config) -> Kept:
    """``kept`` (oldest first) in Ray's order: worst first, best last."""
    attr = getattr(checkpoint_config, "checkpoint_score_attribute", None)
    scored = [attr in metrics for _, metrics in kept] if attr is not None else []
    if not any(scored):
        return list(kept)  # every checkpoint appended: recency
    if all(scored):  # every one inserted: a stable sort (the newer of a tie ranks higher)
        return sorted(kept, key=lambda item: score_key(item[1], checkpoint_config))
    order: Kept = []
    keys: List[Tuple[bool, float]] = []
    in_order = True  # appended checkpoints can break the order; then scan as Ray does
    for item in kept:
        key = score_key(item[1], checkpoint_config)
        if attr in item[1]:
            if in_order:
                i = bisect.bisect_right(keys, key)
            else:
                i = next((j for j, k in enumerate(keys) if k > key), len(keys))
        else:
            i = len(keys)
            in_order = in_order and (not keys or keys[-1] <= key)
        keys.insert(i, key)
        order.insert(i, item)
    return order


def select_kept(kept: Kept, checkpoint_config) -> Set[str]:
    """Names of the checkpoints to keep on storage once ``kept[-1]`` (the latest) is
    registered: the best ``num_to_keep``, plus the latest."""
    num_to_keep = getattr(checkpoint_config, "num_to_keep", None)
    if num_to_keep is None or len(kept) <= num_to_keep:
        return {name for name, _ in kept}
    keep = {name for name, _ in ranked(kept, checkpoint_config)[-num_to_keep:]}
    keep.add(kept[-1][0])
    return keep


def best_checkpoints(kept: Kept, checkpoint_config) -> Kept:
    """Ray's ``best_checkpoint_results``: the best ``num_to_keep`` of ``kept`` (all
    without it), worst first. What ``Result.best_checkpoints`` lists."""
    order = ranked(kept, checkpoint_config)
    num_to_keep: Optional[int] = getattr(checkpoint_config, "num_to_keep", None)
    return order if num_to_keep is None else order[-num_to_keep:]
