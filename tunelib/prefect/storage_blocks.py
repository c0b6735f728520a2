"""Prefect filesystem blocks as experiment storage: a block becomes a ``(pyarrow fs, path)``.

A Prefect user keeps storage settings and credentials in Prefect blocks; tunelib reads and
writes through them when ``storage_path`` is ``prefect-block://<block-type-slug>/<name>[/sub]``
or ``storage_filesystem`` is a block instance. Each supported block maps to what
:mod:`tunelib.storage` already does:

* ``LocalFileSystem(basepath)`` → the local directory ``basepath``;
* ``RemoteFileSystem(basepath="s3://bucket/prefix", settings={...})`` → the fsspec
  filesystem of ``basepath``'s protocol built with ``settings`` as storage options;
* ``prefect_aws.S3Bucket`` (if prefect-aws is installed) → ``s3://bucket/bucket_folder``
  with the block's credentials as s3fs options.

The filesystem returned holds the settings themselves (an fsspec filesystem pickles with
its options), so worker processes that receive it need no Prefect. One that receives only
the ``prefect-block://`` URL loads the block itself, once per process. This is the only
module of tunelib that imports Prefect's block classes; :mod:`tunelib.storage` imports it
only for a ``prefect-block://`` path or when Prefect is already imported.

Example::

    RemoteFileSystem(basepath="s3://bucket/runs", settings={"key": "...", "secret": "..."}
                     ).save("my-results")
    RunConfig(storage_path="prefect-block://remote-file-system/my-results/experiments")
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from enum import StrEnum
from typing import Any, Dict, NamedTuple, Optional, Tuple

import pyarrow.fs as pafs

from tunelib import storage
from tunelib.prefect.server import configured_api_url

__all__ = ["SCHEME", "BlockType", "BlockRoot", "is_storage_block", "block_root", "resolve_url",
           "resolve_path"]

SCHEME = "prefect-block"


class BlockType(StrEnum):
    """The block types tunelib stores experiments through (their Prefect slugs)."""

    LOCAL = "local-file-system"
    REMOTE = "remote-file-system"
    S3_BUCKET = "s3-bucket"


_SUPPORTED = ", ".join(t.value for t in BlockType)


class BlockRoot(NamedTuple):
    """The filesystem a block stands for and its base folder on it (prefix stripped)."""

    fs: pafs.FileSystem
    root: str


_LOADED: Dict[str, BlockRoot] = {}
_LOADED_LOCK = threading.Lock()


def is_storage_block(obj: Any) -> bool:
    """True when ``obj`` is a Prefect block instance (supported as storage or not)."""
    from prefect.blocks.core import Block

    return isinstance(obj, Block)


def block_root(block: Any, alias: Optional[str] = None) -> BlockRoot:
    """The filesystem and base folder of a block instance.

    ``alias`` (``prefect-block://type/name``) is what :func:`tunelib.storage.fs_uri` then
    calls the block's files, instead of their bare ``s3://`` URL.
    """
    slug = type(block).get_block_type_slug()
    if slug == BlockType.LOCAL:
        fs, root = storage.get_fs_and_path(block.basepath or ".")
        return BlockRoot(fs, root)
    if slug == BlockType.REMOTE:
        return _fsspec_root(block.basepath, dict(block.settings), alias)
    if slug == BlockType.S3_BUCKET:
        folder = (block.bucket_folder or "").strip("/")
        url = f"s3://{block.bucket_name}" + (f"/{folder}" if folder else "")
        return _fsspec_root(url, _s3_options(block.credentials), alias)
    raise ValueError(
        f"Prefect block type {slug!r} ({type(block).__name__}) cannot hold tunelib storage: "
        f"use one of {_SUPPORTED}."
    )


def resolve_path(block: Any, path: str) -> Tuple[pafs.FileSystem, str]:
    """``(fs, path)`` for ``path`` inside a block instance (``storage_filesystem=block``).

    As in Prefect's ``RemoteFileSystem``, a path is relative to the block's basepath; one
    already under it (such as what an earlier call returned) is kept; a leading ``~/`` or
    ``/`` is dropped, so Ray's default ``~/ray_results`` becomes ``<basepath>/ray_results``.
    """
    fs, root = block_root(block)
    return fs, _under(root, path)


def resolve_url(url: str) -> Tuple[pafs.FileSystem, str]:
    """``(fs, path)`` for ``prefect-block://<block-type-slug>/<block-name>[/sub/path]``.

    The block is loaded from the current Prefect API once per process.

    Example::

        fs, path = resolve_url("prefect-block://remote-file-system/my-results/exp")
        # path == "bucket/runs/exp" for basepath "s3://bucket/runs"
    """
    slug, name, sub = _parse(url)
    key = f"{slug}/{name}"
    with _LOADED_LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = _LOADED[key] = block_root(_load(slug, name), alias=f"{SCHEME}://{key}")
    return loaded.fs, _under(loaded.root, sub)


def _parse(url: str) -> Tuple[str, str, str]:
    rest = url.split("://", 1)[1] if "://" in url else url
    slug, _, tail = rest.strip("/").partition("/")
    name, _, sub = tail.partition("/")
    if not slug or not name:
        raise ValueError(
            f"{url!r} does not name a Prefect block: write "
            f"{SCHEME}://<block-type-slug>/<block-name>[/sub/path], e.g. "
            f"{SCHEME}://remote-file-system/my-results/experiments."
        )
    return slug, name, sub


def _block_class(slug: str):
    if slug == BlockType.LOCAL:
        from prefect.filesystems import LocalFileSystem

        return LocalFileSystem
    if slug == BlockType.REMOTE:
        from prefect.filesystems import RemoteFileSystem

        return RemoteFileSystem
    if slug == BlockType.S3_BUCKET:
        try:
            from prefect_aws import S3Bucket
        except ImportError:
            raise ValueError(
                "Prefect block type 's3-bucket' needs prefect-aws: pip install prefect-aws "
                "(or keep the bucket in a remote-file-system block with s3:// basepath)."
            ) from None
        return S3Bucket
    raise ValueError(
        f"Prefect block type {slug!r} cannot hold tunelib storage: use one of {_SUPPORTED} "
        f"({SCHEME}://<block-type-slug>/<block-name>)."
    )


def _load(slug: str, name: str):
    from prefect.exceptions import ObjectNotFound

    cls = _block_class(slug)
    try:
        with _configured_api():
            return cls.load(name)
    except ValueError as exc:
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
        raise ValueError(
            f"no Prefect block '{slug}/{name}' on {_api_name()}: create it with "
            f"{cls.__name__}(...).save({name!r}) or check the name (prefect block ls)."
        ) from None


def _configured_api():
    """Prefect's settings with PREFECT_API_URL as the environment has it now: Prefect reads
    the environment once, at import, and would start an ephemeral server when it was set
    later (as tunelib's server does for an experiment). Inside a flow run, Prefect's client
    context (the caller's API) still wins."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = configured_api_url()
    if not url or url == PREFECT_API_URL.value():
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_API_URL: url})


def _api_name() -> str:
    return configured_api_url() or "the ephemeral Prefect server (PREFECT_API_URL is not set)"


def _fsspec_root(url: str, options: Dict[str, Any], alias: Optional[str]) -> BlockRoot:
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    inner = fsspec.filesystem(protocol, **options)
    root = inner._strip_protocol(url).rstrip("/")
    if protocol in ("file", "local"):
        return BlockRoot(*storage.get_fs_and_path(root))
    return BlockRoot(storage.wrap_fsspec(inner, storage.Alias(alias, root) if alias else None),
                     root)


def _s3_options(credentials: Any) -> Dict[str, Any]:
    """s3fs options from prefect-aws ``AwsCredentials`` or ``MinIOCredentials``."""
    options: Dict[str, Any] = {}
    key = getattr(credentials, "aws_access_key_id", None) or getattr(
        credentials, "minio_root_user", None)
    secret = getattr(credentials, "aws_secret_access_key", None) or getattr(
        credentials, "minio_root_password", None)
    token = getattr(credentials, "aws_session_token", None)
    if key:
        options["key"] = key
    if secret:
        options["secret"] = _secret(secret)
    if token:
        options["token"] = _secret(token)
    if getattr(credentials, "profile_name", None):
        options["profile"] = credentials.profile_name
    client_kwargs = {}
    if getattr(credentials, "region_name", None):
        client_kwargs["region_name"] = credentials.region_name
    params = getattr(credentials, "aws_client_parameters", None)
    if params is not None and getattr(params, "endpoint_url", None):
        client_kwargs["endpoint_url"] = params.endpoint_url
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _under(root: str, path: Optional[str]) -> str:
    path = os.fspath(path or "")
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return path
    rel = path[1:] if path.startswith("~") else path
    rel = rel.lstrip("/")
    return posixpath.join(root, rel).rstrip("/") if rel else root
