"""Every path and byte of an experiment goes through here.

A location is a ``(pyarrow.fs.FileSystem, path)`` pair, as in Ray: local paths use
pyarrow's ``LocalFileSystem``; ``memory://``, ``s3://`` and every other fsspec protocol
are fsspec filesystems wrapped in ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))`` (fsspec,
not pyarrow's native S3, so endpoint settings such as ``AWS_ENDPOINT_URL`` and fsspec
config apply). The wrapped filesystems pickle, so ``(fs, path)`` can be sent to worker
processes; for ``memory://`` the data itself stays in the process that wrote it
(see :func:`is_process_local`).

A Prefect filesystem block names a location too: ``prefect-block://<type>/<name>[/sub]``
as a path, or a block instance as ``storage_filesystem`` (Prefect keeps the settings and
credentials; :mod:`tunelib.prefect.storage_blocks` turns the block into an fsspec
filesystem). That module is imported only for such a path, or for a filesystem argument
that is not a pyarrow one while Prefect is already imported: this module's one edge up
into the Prefect layer, listed in tests/test_layering.py.

Example::

    fs, path = get_fs_and_path("s3://bucket/results/exp")   # path == "bucket/results/exp"
    write_text(fs, path + "/notes.txt", "hello")
    fs_uri(fs, path)                                         # "s3://bucket/results/exp"
"""

from __future__ import annotations

import os
import posixpath
import shutil
import sys
import tempfile
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import pyarrow.fs as pafs

__all__ = [
    "get_fs_and_path",
    "wrap_fsspec",
    "Alias",
    "fs_from_uri",
    "fs_uri",
    "is_local",
    "is_process_local",
    "upload_dir",
    "download_dir",
    "delete_dir",
    "exists",
    "is_dir",
    "list_dir",
    "read_bytes",
    "write_bytes",
    "read_text",
    "write_text",
    "join",
    "invalidate_cache",
]

_LOCAL = pafs.LocalFileSystem()
_FS_CACHE: Dict[str, pafs.FileSystem] = {}
_FS_CACHE_LOCK = threading.Lock()
# Protocols whose data lives only in the current process.
_PROCESS_LOCAL_PROTOCOLS = {"memory"}
# Paths of this scheme name a Prefect filesystem block (tunelib.prefect.storage_blocks).
_BLOCK_SCHEME = "prefect-block"


class Alias(NamedTuple):
    """Another URL for the files under ``root``: ``uri`` + the rest of the path.

    A Prefect block's files are known as ``prefect-block://type/name/...``, a URL that
    names the block holding the credentials rather than the bare ``s3://`` location.
    """

    uri: str
    root: str


class _AliasedHandler(pafs.FSSpecHandler):
    def __init__(self, fs, alias: Optional[Alias]):
        super().__init__(fs)
        self.alias = alias


def wrap_fsspec(fsspec_fs, alias: Optional[Alias] = None) -> pafs.FileSystem:
    """An fsspec filesystem (with its options, e.g. credentials) as a pyarrow filesystem.

    It pickles with its options, so worker processes reach the same storage. With
    ``alias``, :func:`fs_uri` names paths under ``alias.root`` by ``alias.uri``.

    Example::

        fs = wrap_fsspec(fsspec.filesystem("s3", client_kwargs={"endpoint_url": url}))
    """
    return pafs.PyFileSystem(_AliasedHandler(fsspec_fs, alias))


def _split_protocol(uri: str) -> Tuple[Optional[str], str]:
    if "://" not in uri:
        return None, uri
    proto, rest = uri.split("://", 1)
    return proto.lower(), rest


def _fsspec_fs(fs: pafs.FileSystem):
    """The fsspec filesystem inside a PyFileSystem(FSSpecHandler), else None."""
    handler = getattr(fs, "handler", None)
    return getattr(handler, "fs", None)


def _fsspec_protocol(fsspec_fs) -> str:
    proto = fsspec_fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto


def _cached_fsspec(protocol: str) -> pafs.FileSystem:
    # Constructing an s3 filesystem costs tens of milliseconds (credential lookup);
    # resolve each protocol once per process.
    with _FS_CACHE_LOCK:
        fs = _FS_CACHE.get(protocol)
        if fs is None:
            import fsspec

            fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(protocol)))
            _FS_CACHE[protocol] = fs
        return fs


def _storage_blocks():
    from tunelib.prefect import storage_blocks  # the one edge up; see the module docstring

    return storage_blocks


def _block_filesystem(storage_filesystem: Any, path: str) -> Optional[Tuple[pafs.FileSystem, str]]:
    """``(fs, path)`` when ``storage_filesystem`` is a Prefect block, else None.

    A block instance means Prefect is imported already: without it, nothing is imported.
    """
    if isinstance(storage_filesystem, pafs.FileSystem) or "prefect" not in sys.modules:
        return None
    blocks = _storage_blocks()
    if not blocks.is_storage_block(storage_filesystem):
        return None
    return blocks.resolve_path(storage_filesystem, path)


def get_fs_and_path(
    path: Union[str, os.PathLike],
    storage_filesystem: Any = None,
) -> Tuple[pafs.FileSystem, str]:
    """Resolve a path or URI to a ``(pyarrow filesystem, path on it)`` pair.

    With ``storage_filesystem`` given, ``path`` is taken as already prefix-stripped
    and returned unchanged (as Ray does); a Prefect filesystem block given there becomes
    its filesystem, and ``path`` a folder under its basepath. Otherwise: local paths and
    ``file://`` give pyarrow's ``LocalFileSystem`` and an absolute path; ``s3://bucket/x``
    gives an s3fs-backed filesystem and ``"bucket/x"``; ``prefect-block://type/name/x``
    gives the filesystem of that Prefect block (loaded once per process) and ``x`` under
    its basepath; any other fsspec protocol gives that fsspec filesystem, wrapped for
    pyarrow.

    Example::

        >>> get_fs_and_path("/tmp/results")[1]
        '/tmp/results'
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    if storage_filesystem is not None:
        return _block_filesystem(storage_filesystem, path) or (storage_filesystem, path)
    proto, rest = _split_protocol(path)
    if proto is None or proto in ("file", "local"):
        return _LOCAL, os.path.abspath(os.path.expanduser(rest))
    if proto == _BLOCK_SCHEME:
        return _storage_blocks().resolve_url(path)
    if proto == "s3a":
        proto = "s3"
    fs = _cached_fsspec(proto)
    stripped = _fsspec_fs(fs)._strip_protocol(path)
    return fs, stripped.rstrip("/") or stripped


def fs_from_uri(uri: Union[str, os.PathLike]) -> pafs.FileSystem:
    """The filesystem :func:`get_fs_and_path` resolves ``uri`` to (cached per protocol)."""
    return get_fs_and_path(uri)[0]


def fs_uri(fs: pafs.FileSystem, path: str) -> str:
    """Turn ``(fs, path)`` back into the URL a user would write.

    ``(LocalFileSystem, "/abs/p")`` → ``"/abs/p"``; memory → ``"memory://p"``;
    s3 → ``"s3://bucket/p"``; a Prefect block's files → ``"prefect-block://type/name/p"``.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    alias = getattr(getattr(fs, "handler", None), "alias", None)
    if alias is not None and (path == alias.root or path.startswith(alias.root + "/")):
        return alias.uri + path[len(alias.root):]
    inner = _fsspec_fs(fs)
    if inner is not None:
        proto = _fsspec_protocol(inner)
        if proto in ("file", "local"):
            return path
        return f"{proto}://{path.lstrip('/')}"
    type_name = fs.type_name
    if type_name in ("s3", "gcs", "hdfs", "abfs"):
        scheme = "gs" if type_name == "gcs" else type_name
        return f"{scheme}://{path.lstrip('/')}"
    return path


def is_local(fs: pafs.FileSystem) -> bool:
    """True when ``fs`` is the local disk (paths on it can be opened with ``open()``)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return True
    inner = _fsspec_fs(fs)
    return inner is not None and _fsspec_protocol(inner) in ("file", "local")


def is_process_local(fs: pafs.FileSystem) -> bool:
    """True when other processes cannot see what is written to ``fs`` (``memory://``)."""
    inner = _fsspec_fs(fs)
    if inner is not None:
        return _fsspec_protocol(inner) in _PROCESS_LOCAL_PROTOCOLS
    return fs.type_name == "mock"


def invalidate_cache(fs: pafs.FileSystem, path: Optional[str] = None) -> None:
    """Forget cached listings (s3fs caches them) so files written by other processes show.

    Call before reading a location that other processes may have written to.
    """
    inner = _fsspec_fs(fs)
    if inner is not None and hasattr(inner, "invalidate_cache"):
        inner.invalidate_cache(path)


def join(path: str, *parts: str) -> str:
    """Join path parts with ``/`` (object-store paths never use ``os.sep``)."""
    return posixpath.join(path, *parts)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    """True when a file or directory exists at ``(fs, path)``."""
    if is_local(fs):
        return os.path.exists(path)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    """True when ``(fs, path)`` is a directory (a non-empty prefix on object stores)."""
    if is_local(fs):
        return os.path.isdir(path)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def list_dir(fs: pafs.FileSystem, path: str, dirs_only: bool = False) -> List[str]:
    """Names (not paths) of the entries directly under ``path``; ``[]`` if it is missing.

    With ``dirs_only``, only subdirectories are listed (one listing call, no stat per entry).
    """
    if is_local(fs):
        try:
            with os.scandir(path) as it:
                return [e.name for e in it if not dirs_only or e.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    try:
        infos = fs.get_file_info(selector)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        posixpath.basename(info.path.rstrip("/"))
        for info in infos
        if not dirs_only or info.type == pafs.FileType.Directory
    ]


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    """The whole content of the file at ``(fs, path)``."""
    if is_local(fs):
        with open(path, "rb") as f:
            return f.read()
    with fs.open_input_stream(path) as f:
        return f.readall()


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``(fs, path)``, creating parent directories.

    On the local disk the write is atomic (temp file + rename): a reader never sees
    half a file.
    """
    if is_local(fs):
        _write_local(path, "wb", [data])
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text_parts(fs: pafs.FileSystem, path: str, parts: Iterable[str]) -> None:
    """Write the concatenation of ``parts`` as UTF-8 to ``(fs, path)``: on the local disk
    without holding it whole, atomically as :func:`write_bytes`; elsewhere joined first (a
    part that raises must not leave half a file behind)."""
    if is_local(fs):
        _write_local(path, "w", parts)
    else:
        write_bytes(fs, path, "".join(parts).encode("utf-8"))


def _write_local(path: str, mode: str, parts: Iterable[Any]) -> None:
    """Write ``parts`` into a temporary file beside ``path``, then rename it over it."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent or ".", prefix=".tmp_" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_text(fs: pafs.FileSystem, path: str) -> str:
    """The file at ``(fs, path)`` decoded as UTF-8."""
    return read_bytes(fs, path).decode("utf-8")


def write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    """Write ``text`` as UTF-8 to ``(fs, path)`` (see :func:`write_bytes`)."""
    write_bytes(fs, path, text.encode("utf-8"))


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    """Delete the directory ``(fs, path)`` and everything in it; a missing one is fine."""
    if is_local(fs):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def _local_files(local_dir: str) -> List[str]:
    out = []
    for root, _dirs, files in os.walk(local_dir):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), local_dir))
    return out


def upload_dir(local_dir: str, fs: pafs.FileSystem, fs_path: str) -> None:
    """Copy the local directory ``local_dir`` into ``(fs, fs_path)``, recursively.

    Existing files at the destination are overwritten; others are kept.
    """
    local_dir = os.fspath(local_dir)
    if not os.path.isdir(local_dir):
        raise FileNotFoundError(f"upload_dir: {local_dir!r} is not a local directory")
    if is_local(fs):
        if os.path.abspath(local_dir) != os.path.abspath(fs_path):
            shutil.copytree(local_dir, fs_path, dirs_exist_ok=True)
        return
    inner = _fsspec_fs(fs)
    rel = _local_files(local_dir)
    if inner is not None:
        # One batched put: s3fs uploads the files concurrently.
        inner.makedirs(fs_path, exist_ok=True)
        if rel:
            inner.put(
                [os.path.join(local_dir, r) for r in rel],
                [posixpath.join(fs_path, r.replace(os.sep, "/")) for r in rel],
            )
        return
    fs.create_dir(fs_path, recursive=True)
    pafs.copy_files(local_dir, fs_path, source_filesystem=_LOCAL, destination_filesystem=fs)


def download_dir(fs: pafs.FileSystem, fs_path: str, local_dir: str) -> None:
    """Copy the directory ``(fs, fs_path)`` into the local directory ``local_dir``."""
    local_dir = os.fspath(local_dir)
    os.makedirs(local_dir, exist_ok=True)
    if is_local(fs):
        if os.path.abspath(local_dir) != os.path.abspath(fs_path):
            shutil.copytree(fs_path, local_dir, dirs_exist_ok=True)
        return
    selector = pafs.FileSelector(fs_path, allow_not_found=False, recursive=True)
    infos = [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    base = fs_path.strip("/")
    rel = [posixpath.relpath(i.path.strip("/"), base) for i in infos]
    for r in rel:
        os.makedirs(os.path.dirname(os.path.join(local_dir, r)), exist_ok=True)
    inner = _fsspec_fs(fs)
    if inner is not None and rel:
        inner.get([i.path for i in infos], [os.path.join(local_dir, r) for r in rel])
        return
    for info, r in zip(infos, rel):
        with fs.open_input_stream(info.path) as src, open(os.path.join(local_dir, r), "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
