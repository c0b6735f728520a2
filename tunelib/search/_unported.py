"""Ray searchers whose library could not be installed here, so tunelib has not ported them.

They keep Ray's constructor signature and Ray's ImportError when the library is missing;
with the library installed they raise ``NotImplementedError`` rather than half-work.
"""

from __future__ import annotations

import importlib
from typing import NoReturn


def unported(cls_name: str, module: str, install_hint: str, why: str) -> NoReturn:
    """Raise Ray's ImportError if ``module`` is missing, else NotImplementedError saying why.

    Example::

        unported("HEBOSearch", "hebo", "HEBO must be installed! ...", "needs numpy<1.25")
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(install_hint) from exc
    raise NotImplementedError(
        f"tunelib does not implement {cls_name} yet: {why}. Use another searcher "
        "(OptunaSearch, HyperOptSearch, BayesOptSearch, NevergradSearch, ZOOptSearch, TuneBOHB)."
    )
