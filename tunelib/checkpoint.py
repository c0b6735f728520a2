"""Checkpoint: a directory of data on local or remote storage (``ray.train.Checkpoint``).

Example::

    from tunelib.train import Checkpoint

    ckpt = Checkpoint.from_directory("/tmp/my_ckpt")
    with ckpt.as_directory() as d:          # the dir itself: no copy on local disk
        state = open(os.path.join(d, "model.pt"), "rb").read()

    remote = Checkpoint("s3://bucket/exp/trial/checkpoint_000003")
    remote.path                             # 'bucket/exp/trial/checkpoint_000003'
    local = remote.to_directory()           # downloaded into a temp dir
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Dict, Iterator, Optional, Union

import pyarrow.fs

from tunelib import storage

__all__ = ["Checkpoint"]

# Same names as Ray, so checkpoints written by either tool are read by the other.
_METADATA_FILE_NAME = ".metadata.json"
_CHECKPOINT_TEMP_DIR_PREFIX = "checkpoint_tmp_"

_REMOVED_APIS = {
    "from_dict", "to_dict", "from_bytes", "to_bytes", "get_internal_representation",
    "from_uri", "to_uri", "uri", "get_preprocessor", "set_preprocessor",
}


class _CheckpointMeta(type):
    def __getattr__(cls, item):
        if item in _REMOVED_APIS:
            raise AttributeError(
                f"Checkpoint does not support `{item}` (removed in Ray 2.7): checkpoints are "
                "directories. Use Checkpoint.from_directory(dir) / checkpoint.to_directory()."
            )
        raise AttributeError(item)


class Checkpoint(metaclass=_CheckpointMeta):
    """A reference to data persisted as a directory in local or remote storage.

    Args:
        path: a local path or a URI (``s3://bucket/x``, ``memory://x``). When
            ``filesystem`` is given, ``path`` must be a path on it, prefix stripped.
        filesystem: the ``pyarrow.fs.FileSystem`` holding the data; inferred from
            the URI when omitted.

    Attributes:
        path: the path on ``filesystem`` (``"bucket/x"`` for ``s3://bucket/x``).
        filesystem: a ``pyarrow.fs.FileSystem``.

    Example::

        >>> ckpt = Checkpoint("/tmp/example_checkpoint_dir")
        >>> ckpt.path
        '/tmp/example_checkpoint_dir'
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        filesystem: Optional["pyarrow.fs.FileSystem"] = None,
    ):
        self.path = str(os.fspath(path))
        self.filesystem = filesystem
        if path and filesystem is None:
            self.filesystem, self.path = storage.get_fs_and_path(self.path)
        # Names the temp dir this checkpoint downloads to, so repeated to_directory()
        # calls on one object reuse one download.
        self._uuid = uuid.uuid4()

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem={self.filesystem.type_name}, path={self.path})"

    def __fspath__(self):
        raise TypeError(
            "You cannot use `Checkpoint` objects directly as paths. "
            "Use `Checkpoint.to_directory()` or `Checkpoint.as_directory()` instead."
        )

    def _metadata_path(self) -> str:
        return storage.join(self.path, _METADATA_FILE_NAME)

    def get_metadata(self) -> Dict[str, Any]:
        """The metadata dict stored with the checkpoint (``{}`` when none is stored)."""
        path = self._metadata_path()
        if not storage.exists(self.filesystem, path):
            return {}
        return json.loads(storage.read_text(self.filesystem, path))

    def set_metadata(self, metadata: Dict[str, Any]) -> None:
        """Store ``metadata`` (JSON-serialisable) with the checkpoint, replacing any existing."""
        storage.write_text(self.filesystem, self._metadata_path(), json.dumps(metadata))

    def update_metadata(self, metadata: Dict[str, Any]) -> None:
        """Merge ``metadata`` into the metadata stored with the checkpoint."""
        existing = self.get_metadata()
        existing.update(metadata)
        self.set_metadata(existing)

    @classmethod
    def from_directory(cls, path: Union[str, os.PathLike]) -> "Checkpoint":
        """A checkpoint referring to the local directory ``path`` (nothing is copied).

        Example::

            >>> Checkpoint.from_directory("/tmp/ckpt").filesystem.type_name
            'local'
        """
        return cls(os.path.abspath(os.path.expanduser(os.fspath(path))),
                   filesystem=pyarrow.fs.LocalFileSystem())

    def _get_temporary_checkpoint_dir(self) -> str:
        return os.path.join(tempfile.gettempdir(), _CHECKPOINT_TEMP_DIR_PREFIX + self._uuid.hex)

    def to_directory(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        """Copy the checkpoint's contents into a local directory and return its path.

        Args:
            path: the target directory (created if missing); a fresh temporary
                directory when omitted.
        """
        local = path if path is not None else self._get_temporary_checkpoint_dir()
        local = os.path.normpath(os.path.expanduser(os.fspath(local)))
        os.makedirs(local, exist_ok=True)
        storage.download_dir(self.filesystem, self.path, local)
        return local

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Context manager giving the checkpoint's contents as a local directory.

        On the local filesystem this yields the checkpoint directory itself (no copy,
        nothing removed afterwards); treat it as read-only. Otherwise the contents are
        downloaded into a temporary directory that is removed when the block exits.
        """
        if storage.is_local(self.filesystem):
            yield self.path
            return
        temp_dir = tempfile.mkdtemp(prefix=_CHECKPOINT_TEMP_DIR_PREFIX)
        try:
            storage.download_dir(self.filesystem, self.path, temp_dir)
            yield temp_dir
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
