"""Which checkpoints ``CheckpointConfig`` keeps: ranking by score, and the kept set.

Pure functions, decided in one place: the trial writer applies them where checkpoints
are persisted; the experiment state lists the kept ones best first with the same ranking.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Set, Tuple

from tunelib._layout import flatten_dict

Kept = List[Tuple[str, Dict[str, Any]]]   # (checkpoint dir name, its metrics), oldest first


def score(metrics: Dict[str, Any], attribute: Optional[str]) -> Optional[float]:
    """The checkpoint's ``checkpoint_score_attribute`` as a number (nested keys as "a/b"),
    or None when missing, not a number, or NaN."""
    if attribute is None:
        return None
    value = metrics.get(attribute)
    if value is None:
        value = flatten_dict(metrics).get(attribute)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def rank_checkpoints(kept: Kept, checkpoint_config) -> Kept:
    """``kept`` ordered best first by ``checkpoint_score_attribute`` (newest first without
    one); checkpoints that lack the attribute rank last."""
    attr = getattr(checkpoint_config, "checkpoint_score_attribute", None)
    if attr is None:
        return list(reversed(kept))
    sign = 1.0 if checkpoint_config.checkpoint_score_order == "max" else -1.0

    def key(item):
        value = score(item[1], attr)
        return (value is not None, sign * value if value is not None else 0.0)

    return sorted(kept, key=key, reverse=True)


def select_kept(kept: Kept, checkpoint_config) -> Set[str]:
    """Names of the checkpoints ``CheckpointConfig`` keeps: the best ``num_to_keep`` by
    score (or the most recent), plus always the latest, which a retry restores from."""
    cfg = checkpoint_config
    if cfg is None or cfg.num_to_keep is None or len(kept) <= cfg.num_to_keep:
        return {name for name, _ in kept}
    ranked = rank_checkpoints(kept, cfg)
    keep = {name for name, _ in ranked[: cfg.num_to_keep]}
    keep.add(kept[-1][0])
    return keep
