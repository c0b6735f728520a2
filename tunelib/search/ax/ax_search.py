"""``AxSearch``: Ray's signature only; not ported yet (ax-platform 1.x installs here without
touching torch/numpy, but pulls ~25 packages and was left for later).

Example::

    AxSearch(metric="loss", mode="min")   # ImportError (no Ax) or NotImplementedError
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from tunelib.search._unported import unported
from tunelib.search.searcher import Searcher


class AxSearch(Searcher):
    """Ray's Ax searcher; raises on creation (see the module docstring).

    Example::

        AxSearch(metric="loss", mode="min")  # raises
    """

    def __init__(
        self,
        space: Optional[Union[Dict, List[Dict]]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        parameter_constraints: Optional[List] = None,
        outcome_constraints: Optional[List] = None,
        ax_client: Optional[Any] = None,
        **ax_kwargs,
    ):
        unported(
            "AxSearch",
            "ax",
            "Ax must be installed! You can install AxSearch with the command: "
            "`pip install ax-platform`.",
            "the port has not been written yet",
        )
