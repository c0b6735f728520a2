"""The files through which the driver and a trial running on a Prefect worker talk
(see ``tunelib.executor.prefect_workers`` for the protocol): their names, atomic writes,
fresh reads on caching filesystems, and a tail of a growing result.json."""

from __future__ import annotations

import json
import os
import uuid
from typing import List, Optional

CONTROL_DIR = ".tunelib"
TRAINABLE_FILE = "trainable.pkl"
SPEC_FILE = "spec.pkl"
CONTROL_FILE = "control.json"
OUTCOME_FILE = "outcome.json"
HEARTBEAT_FILE = "heartbeat.json"
CHECKPOINTS_FILE = "checkpoints.json"   # the latest persisted checkpoint and what is kept


class TrialAttemptFailed(RuntimeError):
    """The trainable raised; the message is its traceback (error.txt has it too)."""


def _control_path(trial_path: str, name: str) -> str:
    return f"{trial_path}/{CONTROL_DIR}/{name}"


def _fresh(fs, path: str) -> None:
    """Object-store listings are cached by fsspec: another machine's writes must show."""
    from tunelib import storage

    if not storage.is_local(fs):
        storage.invalidate_cache(fs, path)


def _read_json(fs, path: str) -> Optional[dict]:
    from tunelib import storage

    _fresh(fs, path)
    try:
        return json.loads(storage.read_text(fs, path))
    except (FileNotFoundError, OSError, ValueError):
        return None


def _write_atomic(fs, path: str, data: bytes) -> None:
    """Readers must never see half a record: local files are renamed into place."""
    from tunelib import storage

    if storage.is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:  # an object store's put is atomic
        storage.write_bytes(fs, path, data)


class _Tail:
    """New complete lines of a growing file (result.json), by byte offset."""

    def __init__(self, fs, path: str):
        from tunelib import storage

        self.fs = fs
        self.path = path
        self.local = storage.is_local(fs)
        self.offset = self._size()
        self._partial = b""

    def _size(self) -> int:
        try:
            if self.local:
                return os.path.getsize(self.path)
            from pyarrow.fs import FileType

            _fresh(self.fs, self.path)
            info = self.fs.get_file_info(self.path)
            return info.size if info.type == FileType.File else 0
        except OSError:
            return 0

    def read_lines(self) -> List[str]:
        size = self._size()
        if size < self.offset:  # rewritten shorter: start again (should not happen)
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        if self.local:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(size - self.offset)
        else:
            with self.fs.open_input_file(self.path) as f:
                f.seek(self.offset)
                data = f.read(size - self.offset)
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode() for line in lines if line.strip()]

    def grew(self) -> bool:
        return self._size() != self.offset
