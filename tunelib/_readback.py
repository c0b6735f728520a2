"""What ``fit()`` read back at its end, kept beside the experiment state for the next read.

Reading 10,000 trials back from Ray's layout parses the experiment state (88 MB of JSON:
2-3 s here) and opens every trial directory (~2 s). When ``fit()`` has read its experiment
back, it leaves ``.tunelib-readback-<session>.pkl`` beside ``experiment_state-<session>.json``:
the trials without Ray's pickled fields, what their directories held (checkpoints and
their metrics, error files) and every reported result as one Arrow table. A later
``ExperimentAnalysis`` (``Tuner.restore(path).get_results()``, the CLI) reads that one
file instead, when it belongs to the state file it would read: the same size and the same
last 64 KiB (where the run's total time lies, which every save changes). Anything else (an
older or newer state, a file that cannot be read or unpickled here) and the experiment is
read as before. Ray neither reads nor minds the file; deleting it costs only speed.

It describes the experiment as ``fit()`` left it: a checkpoint directory deleted by hand
afterwards is still listed, as Ray's own state lists it.

Example::

    snapshot = _readback.load(fs, state_path)        # None: read the experiment instead
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import os
import pickle
import posixpath
import zlib
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

from tunelib import storage
from tunelib.trial import Trial

logger = logging.getLogger(__name__)

FORMAT = 1
PREFIX = ".tunelib-readback-"
_TAIL = 1 << 16
# Trial fields not kept: where it lives and its Checkpoint objects are rebuilt for the
# place it is read from; Ray's statistics are kept as JSON text, decoded when first read
_NOT_KEPT = ("experiment_storage", "checkpoint", "restore_from", "metric_analysis")


class Fingerprint(NamedTuple):
    """A state file's size and the CRC-32 of its last 64 KiB."""

    size: int
    tail_crc: int


class Snapshot(NamedTuple):
    """What :func:`load` returns: ``trials`` (each ``(Trial, runtime keys read later)``),
    ``dirs`` (per trial: ``None``, or ``DirRecord``), and the combined results table with
    each trial's row count and last result, as ``_reader._SplitFrames`` takes them."""

    trials: List[Tuple[Trial, Dict[str, Any]]]
    dirs: List[Optional["DirRecord"]]
    table: Any
    counts: List[int]
    lasts: List[Dict[str, Any]]
    null_keys: Set[Tuple[int, str]]


class DirRecord(NamedTuple):
    """What one trial directory held, as ``_reader.TrialData`` has it (names, not paths)."""

    last_result: Dict[str, Any]
    has_results: bool
    config: Optional[Dict[str, Any]]
    checkpoints: List[Tuple[str, Dict[str, Any]]]
    has_error_file: bool
    latest: Optional[str]
    split_index: int


def path_for(state_path: str) -> str:
    """``.tunelib-readback-<session>.pkl`` beside ``experiment_state-<session>.json``."""
    folder, name = posixpath.split(state_path)
    session = name[len("experiment_state-"):-len(".json")]
    return storage.join(folder, f"{PREFIX}{session}.pkl")


def fingerprint(data: bytes) -> Fingerprint:
    """The fingerprint of a state file's content."""
    return Fingerprint(len(data), zlib.crc32(data[-_TAIL:]))


def _read_fingerprint(fs, state_path: str) -> Optional[Fingerprint]:
    if storage.is_local(fs):
        with open(state_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - _TAIL))
            return Fingerprint(size, zlib.crc32(f.read()))
    with fs.open_input_file(state_path) as f:
        size = f.size()
        return Fingerprint(size, zlib.crc32(f.read_at(min(size, _TAIL), max(0, size - _TAIL))))


def save(fs, state_path: str, state: Fingerprint, trials: Sequence[Trial],
         runtime: Dict[str, Dict[str, Any]], dirs: Sequence[Optional[DirRecord]],
         table: Any, counts: Sequence[int], lasts: Sequence[Dict[str, Any]],
         null_keys: Set[Tuple[int, str]]) -> None:
    """Write the snapshot of an experiment read back from the state ``state`` describes."""
    kept = [({k: v for k, v in vars(trial).items() if k not in _NOT_KEPT},
             runtime.get(trial.trial_id, {})) for trial in trials]
    # Ray's statistics (~50 numbers a trial) pickled apart, unpickled when first read
    stats = pickle.dumps([getattr(t.metric_analysis, "stats", None) for t in trials],
                         protocol=5)
    body = {"format": FORMAT, "state": tuple(state), "trials": kept, "stats": stats,
            "dirs": [tuple(d) if d is not None else None for d in dirs],
            "table": table, "counts": list(counts), "lasts": list(lasts),
            "null_keys": set(null_keys)}
    try:
        data = pickle.dumps(body, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        from tunelib import _pickling  # a lambda or a script's class in a config

        data = _pickling.dumps(body)
    storage.write_bytes(fs, path_for(state_path), data)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: reading 10,000 trials back makes millions of
    small objects, and the collections they set off took half of the time (none of
    those objects is garbage yet)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load(fs, state_path: str) -> Optional[Snapshot]:
    """The snapshot written for the state file at ``state_path``, or None (there is none,
    it is for another content of that file, or it cannot be read here)."""
    path = path_for(state_path)
    try:
        data = storage.read_bytes(fs, path)
    except (FileNotFoundError, OSError):
        return None
    try:
        body = pickle.loads(data)
        if body.get("format") != FORMAT or tuple(body["state"]) != _read_fingerprint(fs, state_path):
            return None
        stats = _PickledList(body["stats"])
        dirs = [DirRecord(*d) if d is not None else None for d in body["dirs"]]
        return Snapshot(_trials(body["trials"], stats), dirs, body["table"], body["counts"],
                        body["lasts"], body["null_keys"])
    except Exception as exc:  # noqa: BLE001 - a module gone, another tunelib's format
        logger.debug("Not using %s (%r): reading the experiment instead", path, exc)
        return None


class _PickledList:
    """A pickled list, unpickled when an item is first asked for."""

    def __init__(self, data: bytes):
        self._data: Optional[bytes] = data
        self._items: List[Any] = []

    def __call__(self, i: int) -> Any:
        if self._data is not None:
            self._items, self._data = pickle.loads(self._data), None
        return self._items[i]


def _trials(kept: List[Tuple[Dict[str, Any], Dict[str, Any]]], stats: _PickledList
            ) -> List[Tuple[Trial, Dict[str, Any]]]:
    from tunelib._layout import MetricAnalysis

    defaults = {f.name: None for f in dataclasses.fields(Trial) if f.name in _NOT_KEPT}
    out = []
    for i, (fields, runtime) in enumerate(kept):
        trial = Trial.__new__(Trial)
        trial.__dict__.update(defaults)
        trial.__dict__.update(fields)
        trial.metric_analysis = MetricAnalysis.read_later(functools.partial(stats, i))
        out.append((trial, runtime))
    return out
