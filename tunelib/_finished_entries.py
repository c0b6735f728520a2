"""Finished trials' entries of the experiment state, kept on disk until the next save.

The state (``experiment_state-<session>.json``) is saved every few seconds with every
trial's entry in it. A finished trial's entry no longer changes, so the controller encodes
it once; holding those encodings in memory was most of what the driver kept per trial
(~9 KB of JSON a trial, ~2.3 KB compressed: 23 MB at 10,000 trials). Here they are
compressed into an anonymous temporary file (gone with the process, killed or not); the
driver keeps ~100 bytes a trial: the entry's key, where it lies, its length. A temporary
directory that cannot be written (or fills up) keeps them in memory instead, as before; an
entry that cannot be read back is encoded again by the caller (``get`` answers None).

Example::

    entries = FinishedEntries()
    entries.put("t1", key, entry_json)
    entries.get("t1", key)     # entry_json; None for another key (the trial changed)
    entries.close()
"""

from __future__ import annotations

import io
import logging
import tempfile
import zlib
from typing import IO, Dict, Hashable, Optional, Tuple

log = logging.getLogger(__name__)

__all__ = ["FinishedEntries"]


class FinishedEntries:
    """trial id -> (key, entry): the latest entry ``put`` for a trial, found again only
    with the same ``key`` (what the entry was encoded from)."""

    def __init__(self) -> None:
        self._file: Optional[IO[bytes]] = None
        self._index: Dict[str, Tuple[Hashable, int, int]] = {}
        self._end = 0

    def put(self, trial_id: str, key: Hashable, entry: str) -> None:
        """Keep ``entry`` for ``trial_id`` (replacing what was kept: its bytes stay in the
        file, which only grows when a finished trial changes, e.g. a checkpoint deleted)."""
        blob = zlib.compress(entry.encode(), 1)
        try:
            at = self._append(blob)
        except OSError as exc:   # no temporary file, or its directory filled up
            log.warning("Keeping finished trials' state entries in memory: the temporary "
                        "directory could not be written (%s).", exc)
            self._let_go_of_file()
            self._file = io.BytesIO()   # what was in the file is encoded again when needed
            at = self._append(blob)
        self._index[trial_id] = (key, at, len(blob))   # last: an interrupt leaves no index

    def _append(self, blob: bytes) -> int:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="tunelib-state-")
        f, at = self._file, self._end
        f.seek(at)
        f.write(blob)
        f.flush()
        self._end = at + len(blob)
        return at

    def get(self, trial_id: str, key: Hashable) -> Optional[str]:
        """The entry kept for ``trial_id`` with ``key``, else None (also when it cannot be
        read back)."""
        found = self._index.get(trial_id)
        if found is None or found[0] != key or self._file is None:
            return None
        try:
            self._file.seek(found[1])
            return zlib.decompress(self._file.read(found[2])).decode()
        except (OSError, zlib.error) as exc:
            log.debug("finished entry of %s not read back: %s", trial_id, exc)
            return None

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Let the entries go (the state is saved for good)."""
        self._let_go_of_file()

    def _let_go_of_file(self) -> None:
        self._index.clear()
        self._end = 0
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
