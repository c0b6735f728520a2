"""``HEBOSearch``: Ray's signature only. HEBO (0.3.6) requires numpy < 1.25 (tunelib runs
on numpy 2), so it cannot be installed next to tunelib and the searcher is not ported.

Example::

    HEBOSearch(metric="loss", mode="min")   # ImportError (no HEBO) or NotImplementedError
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from tunelib.search._unported import unported
from tunelib.search.searcher import Searcher


class HEBOSearch(Searcher):
    """Ray's HEBO searcher; raises on creation (see the module docstring).

    Example::

        HEBOSearch(metric="loss", mode="min", random_state_seed=1)  # raises
    """

    def __init__(
        self,
        space: Optional[Any] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        evaluated_rewards: Optional[List] = None,
        random_state_seed: Optional[int] = None,
        max_concurrent: int = 8,
        **kwargs,
    ):
        unported(
            "HEBOSearch",
            "hebo",
            "HEBO must be installed! You can install HEBO with the command: "
            "`pip install 'HEBO>=0.2.0'`.This error may also be caused if HEBO dependencies "
            "have bad versions. Try updating HEBO first.",
            "HEBO requires numpy<1.25, which tunelib's numpy 2 environment cannot install, so "
            "the port could not be tested",
        )
