"""Where a trial's folder is under the experiment's, for its checkpoint links.

The recorder hears a trial's name, not its folder: Ray's folder names are
``<trial name>_<experiment tag>_<date>`` (or whatever ``trial_dirname_creator`` returns),
so the folder is found by listing the experiment's folder once and again only when a
trial is not in the last listing. Blocking storage I/O: the recorder calls this from a
worker thread (``asyncio.to_thread``), never on its event loop.

Example::

    dirs = TrialDirs("/tmp/ray_results/exp")
    dirs.folder("train_fn_1a2b3_00000")   # TrialFolder(uri=".../train_fn_1a2b3_00000_0_lr=0.1_...",
                                          #             checkpoints=["checkpoint_000000", ...])
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from tunelib import storage
from tunelib._layout import is_checkpoint_dir_name
from tunelib.prefect._artifact_content import TrialFolder

log = logging.getLogger("tunelib.recorder")


def match_folder(trial_name: str, names: List[str]) -> Optional[str]:
    """The folder of ``trial_name`` among ``names``: the name itself or one starting with
    ``<name>_`` (the newest, by Ray's date suffix, when a re-run left several).

    >>> match_folder("f_00001", ["f_00001_1_x=2_2026-11-29", "f_000010_0_x=1_2026-11-29"])
    'f_00001_1_x=2_2026-11-29'
    """
    hits = [n for n in names if n == trial_name or n.startswith(trial_name + "_")]
    return max(hits) if hits else None


class TrialDirs:
    """Finds trial folders under ``experiment_path`` (a path or URI; None: unknown)."""

    def __init__(self, experiment_path: Optional[str]):
        self._uri = experiment_path
        self._fs = None
        self._path: Optional[str] = None
        self._listing: List[str] = []
        self._found: Dict[str, str] = {}
        self.listings = 0

    def folder(self, trial_name: str) -> TrialFolder:
        """The trial's folder and the checkpoint dirs in it; unknowns are None."""
        try:
            name = self._find(trial_name)
            if name is None:
                return TrialFolder(None)
            path = storage.join(self._path, name)
            checkpoints = sorted(n for n in storage.list_dir(self._fs, path, dirs_only=True)
                                 if is_checkpoint_dir_name(n))
            return TrialFolder(storage.fs_uri(self._fs, path), checkpoints)
        except Exception as exc:  # storage trouble costs the link, never the record
            log.debug("finding the folder of trial %s failed: %s", trial_name, exc)
            return TrialFolder(None)

    def _find(self, trial_name: str) -> Optional[str]:
        if self._uri is None:
            return None
        if trial_name in self._found:
            return self._found[trial_name]
        if self._fs is None:
            self._fs, self._path = storage.get_fs_and_path(self._uri)
        name = match_folder(trial_name, self._listing)
        if name is None:  # a trial newer than the last listing
            storage.invalidate_cache(self._fs, self._path)
            self._listing = storage.list_dir(self._fs, self._path, dirs_only=True)
            self.listings += 1
            name = match_folder(trial_name, self._listing)
        if name is not None:
            self._found[trial_name] = name
        return name
