"""Writes one trial's files in Ray's layout: params, result.json, progress.csv, checkpoints, errors.

It runs where the trial runs (a worker process), so every reported result is on storage
before ``report()`` returns, whatever happens to the driver. Three backends:

- ``LocalBackend``: plain files, appended and flushed per result (the fast, common case);
- ``FsBackend``: any pyarrow filesystem (s3://...); object stores cannot append, so the
  text files are rewritten whole, at most every ``flush_period_s`` and when the trial ends;
- ``ForwardBackend``: for storage only the driver's process can see (``memory://``): each
  operation is sent to the driver, which applies it with an ``FsBackend``.

Files stay whole: ``result.json`` and ``progress.csv`` are cut back to their last complete
line (row) before a new attempt appends to them, an append that fails midway (a full disk)
is taken back, and a failed write raises ``StorageWriteError``, naming the file and the
cause, which the trial reports as its error.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pickle
import shutil
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from tunelib import _pickling
from tunelib._layout import (
    ERROR_FILE,
    ERROR_PKL,
    PARAMS_FILE,
    PARAMS_PKL,
    PROGRESS_FILE,
    RESULT_FILE,
    checkpoint_dir_name,
    dumps,
    flatten_dict,
)
from tunelib._retention import select_kept
from tunelib.executor._messages import StorageOp, StorageOpKind
from tunelib.executor.base import CheckpointRecord

# --------------------------------------------------------------------------- whole lines

# the files a trial appends to, line by line (progress.csv: row by row)
APPENDED_FILES = (RESULT_FILE, PROGRESS_FILE)
_TAIL_CHUNK = 1 << 16


class StorageWriteError(OSError):
    """A trial's file could not be written (a full disk, lost permissions, a storage
    error). Its message names the file and the cause; ``errno`` is the cause's.

    >>> str(StorageWriteError(28, "No space left on device", "/r/t/result.json"))[:65]
    'Could not write /r/t/result.json: No space left on device. What t'
    """

    def __str__(self) -> str:
        return (
            f"Could not write {self.filename}: {self.strerror}. What the trial wrote before "
            "is intact on storage; free space (or fix the storage), then resume the "
            "experiment, e.g. Tuner.restore(path, trainable, resume_errored=True)."
        )


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """Turn an OSError of the writes inside into a ``StorageWriteError`` naming ``path``."""
    try:
        yield
    except StorageWriteError:
        raise
    except OSError as exc:
        raise StorageWriteError(exc.errno, exc.strerror or str(exc), path) from exc


def complete_length(data: bytes, csv_rows: bool = False) -> int:
    """How many bytes of ``data`` are complete lines: up to and including the last newline;
    with ``csv_rows``, the last newline outside a quoted field (a string metric may hold
    newlines; CSV doubles the quotes inside a field, so an even count of quotes before a
    newline means it ends a row).

    >>> complete_length(b'{"a": 1}\\n{"a"')
    9
    >>> complete_length(b'a,b\\r\\n1,"x\\ny', csv_rows=True)
    5
    """
    pos = data.rfind(b"\n")
    if not csv_rows or pos < 0:
        return pos + 1
    quotes, cursor = data.count(b'"', 0, pos), pos
    while pos >= 0:
        quotes -= data.count(b'"', pos, cursor)
        cursor = pos
        if quotes % 2 == 0:
            return pos + 1
        pos = data.rfind(b"\n", 0, pos)
    return 0


def _local_complete_length(f, csv_rows: bool) -> int:
    size = f.seek(0, os.SEEK_END)
    if csv_rows:  # quotes are counted from the start: the whole file is read
        f.seek(0)
        return complete_length(f.read(), csv_rows=True)
    end = size
    while end > 0:  # result.json can be large: read its tail only
        start = max(0, end - _TAIL_CHUNK)
        f.seek(start)
        pos = f.read(end - start).rfind(b"\n")
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


def cut_back_to_complete_lines(fs, path: str) -> int:
    """Cut the file at ``(fs, path)`` back to its last complete line (row, for
    ``progress.csv``): what a writer killed mid-line, or stopped by a full disk, left
    after it must not run into the next line appended. Returns the bytes cut off (0 when
    the file is whole or absent).

    ``fs`` None means the local filesystem.
    """
    from tunelib import storage

    csv_rows = os.path.basename(path) == PROGRESS_FILE
    with _writing(path):
        if fs is None or storage.is_local(fs):
            try:
                with open(path, "rb+") as f:
                    size = f.seek(0, os.SEEK_END)
                    keep = _local_complete_length(f, csv_rows)
                    if keep < size:
                        f.truncate(keep)
                    return size - keep
            except FileNotFoundError:
                return 0
        if not storage.exists(fs, path):
            return 0
        data = storage.read_bytes(fs, path)
        keep = complete_length(data, csv_rows)
        if keep < len(data):
            storage.write_bytes(fs, path, data[:keep])
        return len(data) - keep


def _append_whole(fd: int, data: bytes) -> None:
    """Append all of ``data``, or nothing: a write that fails midway is taken back."""
    view, written = memoryview(data), 0
    try:
        while written < len(data):
            written += os.write(fd, view[written:])
    except OSError:
        if written:  # shrinking a file works on a full disk too
            with contextlib.suppress(OSError):
                os.ftruncate(fd, os.fstat(fd).st_size - written)
        raise


def _close_all(fds: Dict[str, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


# --------------------------------------------------------------------------- backends


class LocalBackend:
    """Files on the local filesystem; appended files stay open, each append one write."""

    def __init__(self, root: str):
        self.root = root
        with _writing(root):
            os.makedirs(root, exist_ok=True)
        self._fds: Dict[str, int] = {}
        # a writer whose trial failed before close() (its error files did not fit either)
        weakref.finalize(self, _close_all, self._fds)
        self._whole: set = set()   # appended files already cut back to whole lines

    def _open(self, rel: str) -> str:
        path = os.path.join(self.root, rel)
        if rel in APPENDED_FILES and rel not in self._whole:
            cut_back_to_complete_lines(None, path)
            self._whole.add(rel)
        return path

    def append_text(self, rel: str, text: str) -> None:
        path = self._open(rel)
        with _writing(path):
            fd = self._fds.get(rel)
            if fd is None:
                fd = self._fds[rel] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            _append_whole(fd, text.encode("utf-8"))

    def read_text(self, rel: str) -> Optional[str]:
        try:
            with open(self._open(rel), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.root, rel)
        tmp = f"{path}.tmp-{os.getpid()}"
        with _writing(path):
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def upload_dir(self, local_dir: str, rel: str) -> None:
        # copy, then rename: a process killed mid-copy leaves no half checkpoint behind
        dest = os.path.join(self.root, rel)
        tmp = f"{dest}.tmp-{os.getpid()}"
        with _writing(dest):
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                shutil.copytree(local_dir, tmp)
            except OSError:  # shutil.Error too
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.rename(tmp, dest)

    def delete_dir(self, rel: str) -> None:
        shutil.rmtree(os.path.join(self.root, rel), ignore_errors=True)

    def flush(self, final: bool = False) -> None:
        if final:
            _close_all(self._fds)


class FsBackend:
    """Any pyarrow filesystem. Appends are buffered and the whole file rewritten."""

    def __init__(self, fs, root: str, flush_period_s: float = 5.0):
        from tunelib import storage

        self._storage = storage
        self.fs = fs
        self.root = root.rstrip("/")
        self.flush_period_s = flush_period_s
        self._texts: Dict[str, List[str]] = {}
        self._dirty: set = set()
        self._last_flush = 0.0
        with _writing(self.root):
            fs.create_dir(self.root, recursive=True)

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def read_text(self, rel: str) -> Optional[str]:
        if rel in self._texts:
            return "".join(self._texts[rel])
        if not self._storage.exists(self.fs, self._path(rel)):
            return None
        data = self._storage.read_bytes(self.fs, self._path(rel))
        if rel in APPENDED_FILES:  # whole lines only; the next flush writes them back so
            data = data[:complete_length(data, csv_rows=rel == PROGRESS_FILE)]
        return data.decode("utf-8")

    def append_text(self, rel: str, text: str) -> None:
        chunks = self._texts.get(rel)
        if chunks is None:
            existing = self.read_text(rel)
            chunks = self._texts[rel] = [existing] if existing else []
        chunks.append(text)
        self._dirty.add(rel)
        if time.monotonic() - self._last_flush >= self.flush_period_s:
            self.flush()

    def write_bytes(self, rel: str, data: bytes) -> None:
        with _writing(self._path(rel)):
            self._storage.write_bytes(self.fs, self._path(rel), data)

    def upload_dir(self, local_dir: str, rel: str) -> None:
        with _writing(self._path(rel)):
            self._storage.delete_dir(self.fs, self._path(rel))
            self._storage.upload_dir(local_dir, self.fs, self._path(rel))

    def delete_dir(self, rel: str) -> None:
        self._storage.delete_dir(self.fs, self._path(rel))

    def flush(self, final: bool = False) -> None:
        for rel in sorted(self._dirty):
            with _writing(self._path(rel)):
                self._storage.write_text(self.fs, self._path(rel), "".join(self._texts[rel]))
            self._dirty.discard(rel)
        self._last_flush = time.monotonic()


class ForwardBackend:
    """Sends every operation to the driver, for storage that lives in the driver's memory."""

    def __init__(self, send: Callable[[Any], None], trial_dirname: str):
        self._send = send
        self._dir = trial_dirname

    def _op(self, op: "StorageOpKind", rel: str, payload: Any = None) -> None:
        self._send(StorageOp(op, self._dir, rel, payload))

    def append_text(self, rel: str, text: str) -> None:
        self._op(StorageOpKind.APPEND_TEXT, rel, text)

    def read_text(self, rel: str) -> Optional[str]:
        # Progress headers of an earlier attempt are rebuilt from result.json by the driver.
        return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._op(StorageOpKind.WRITE_BYTES, rel, data)

    def upload_dir(self, local_dir: str, rel: str) -> None:
        files: List[Tuple[str, bytes]] = []
        for base, _dirs, names in os.walk(local_dir):
            for name in names:
                full = os.path.join(base, name)
                with open(full, "rb") as f:
                    files.append((os.path.relpath(full, local_dir), f.read()))
        self._op(StorageOpKind.UPLOAD_FILES, rel, files)

    def delete_dir(self, rel: str) -> None:
        self._op(StorageOpKind.DELETE_DIR, rel)

    def flush(self, final: bool = False) -> None:
        pass


def apply_forwarded(backend, message: "StorageOp") -> None:
    """Driver side of ``ForwardBackend``: apply one operation to a real backend."""
    op, rel, payload = message.op, message.rel, message.payload
    if op is StorageOpKind.APPEND_TEXT:
        backend.append_text(rel, payload)
    elif op is StorageOpKind.WRITE_BYTES:
        backend.write_bytes(rel, payload)
    elif op is StorageOpKind.DELETE_DIR:
        backend.delete_dir(rel)
    elif op is StorageOpKind.UPLOAD_FILES:
        for name, data in payload:
            backend.write_bytes(f"{rel}/{name}", data)
    else:
        raise ValueError(f"unknown forwarded storage operation {op!r}")


# --------------------------------------------------------------------------- the writer


class TrialWriter:
    """Appends a trial's results and persists its checkpoints, keeping ``num_to_keep``."""

    def __init__(
        self,
        backend,
        checkpoint_config=None,
        kept_checkpoints: Optional[List[Tuple[str, Dict[str, Any]]]] = None,
        progress_header: Optional[List[str]] = None,
        on_checkpoint: Optional[Callable[[CheckpointRecord], None]] = None,
    ):
        self.backend = backend
        # told of every persisted checkpoint before its result is written (the workers
        # executor publishes retention's outcome for its driver)
        self._on_checkpoint = on_checkpoint
        self.checkpoint_config = checkpoint_config
        # (dir name, metrics) of the checkpoints on storage, oldest first
        self.kept: List[Tuple[str, Dict[str, Any]]] = list(kept_checkpoints or [])
        self._csv_fields: Optional[List[str]] = progress_header
        if self._csv_fields is None:
            existing = backend.read_text(PROGRESS_FILE)
            if existing:
                self._csv_fields = next(csv.reader(io.StringIO(existing)), None)

    def write_params(self, config: Dict[str, Any]) -> None:
        """params.json, Ray's JSON view of the config, and params.pkl, its objects."""
        self.backend.write_bytes(PARAMS_FILE, dumps(config, indent=2, sort_keys=True).encode())
        self.backend.write_bytes(PARAMS_PKL, _pickling.dumps(config))

    def append_result(self, result: Dict[str, Any]) -> None:
        self.backend.append_text(RESULT_FILE, dumps(result) + "\n")
        flat = flatten_dict({k: v for k, v in result.items() if k != "config"})
        buf = io.StringIO()
        if self._csv_fields is None:
            self._csv_fields = list(flat)
            csv.writer(buf).writerow(self._csv_fields)
        csv.DictWriter(buf, self._csv_fields, extrasaction="ignore").writerow(flat)
        self.backend.append_text(PROGRESS_FILE, buf.getvalue())

    def persist_checkpoint(self, local_dir: str, index: int,
                           metrics: Dict[str, Any]) -> CheckpointRecord:
        """Copy a reported checkpoint dir to storage and apply retention (decided here,
        once); returns what was persisted and what is kept."""
        name = checkpoint_dir_name(index)
        self.backend.upload_dir(local_dir, name)
        self.kept.append((name, metrics))
        self._apply_retention()
        record = CheckpointRecord(name, tuple(n for n, _ in self.kept), index + 1)
        if self._on_checkpoint is not None:
            self._on_checkpoint(record)
        return record

    def _apply_retention(self) -> None:
        keep = select_kept(self.kept, self.checkpoint_config)
        for name, _ in self.kept:
            if name not in keep:
                self.backend.delete_dir(name)
        self.kept = [item for item in self.kept if item[0] in keep]

    def write_error(self, error_text: str, exc: Optional[BaseException], failure_number: int) -> None:
        """Append to error.txt (Ray's format) and replace error.pkl with the latest error."""
        header = f"Failure # {failure_number} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})\n"
        previous = self.backend.read_text(ERROR_FILE) or ""
        self.backend.write_bytes(ERROR_FILE, (previous + header + error_text + "\n").encode())
        if exc is not None:
            try:
                data = pickle.dumps(exc)
                pickle.loads(data)
            except Exception:
                from tunelib.error import TrialFailedError

                data = pickle.dumps(TrialFailedError(error_text))
            self.backend.write_bytes(ERROR_PKL, data)

    def close(self) -> None:
        self.backend.flush(final=True)
