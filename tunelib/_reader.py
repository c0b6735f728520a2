"""Reading experiment and trial directories (Ray 2.x layout), without Ray.

One reader serves ``Tuner.fit()``'s ResultGrid, ``Result.from_path``,
``ExperimentAnalysis`` and ``Tuner.restore``. It reads:

- ``experiment_state-<ts>.json``: ``{"trial_data": [[trial_json, runtime_json], ...]}``;
  only plain-JSON fields are used (Ray's pickled hex blobs are ignored), so Ray's
  files and tunelib's read the same way;
- per trial: ``params.pkl`` (the config's objects; ``params.json``, its JSON view, when it
  cannot be unpickled here), ``result.json`` (``progress.csv`` as fallback),
  ``checkpoint_NNNNNN/`` dirs, ``error.pkl`` / ``error.txt``.

A killed writer can leave a truncated last line in ``result.json``, and an older writer
appended after it: a line that is not JSON is skipped, wherever it is, with one warning
naming the file and the line.
"""

from __future__ import annotations

import builtins
import functools
import io
import json
import logging
import math
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.json as pajson

from tunelib import storage
from tunelib._layout import (
    DELIMITER,
    ERROR_FILE,
    ERROR_PKL,
    PARAMS_FILE,
    PARAMS_PKL,
    PROGRESS_FILE,
    RESULT_FILE,
    exact_config_in,
    index_from_trial_id,
    is_checkpoint_dir_name,
    unflatten_dict,
    unflattened_lookup,
)
from tunelib.checkpoint import Checkpoint
from tunelib.error import TrialFailedError
from tunelib.trial import ERROR, RUNNING, TERMINATED, Trial

logger = logging.getLogger(__name__)

_JSON_READ_OPTIONS = pajson.ReadOptions(use_threads=False, block_size=1 << 26)
# the variant generator's ids (<5 hex>_<index>) and a searcher's (8 hex digits)
_TRIAL_ID_RE = re.compile(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")
_MISSING = object()
# Enough to overlap remote reads and let pyarrow's GIL-free parsing use every core.
_MAX_READ_THREADS = 16


def is_nan_or_inf(value: Any) -> bool:
    """True for NaN, +/-inf (and None)."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- result.json
def _complete_json_lines(data: bytes, path: str = RESULT_FILE) -> Tuple[bytes, Dict[str, Any]]:
    """Keep every line up to the last one that parses, dropping what follows it (a line
    cut short by a writer killed mid-write) with a warning naming ``path`` and the line.

    Returns the lines (newline-terminated) and the last record, parsed.
    """
    data = data.strip(b"\n")
    while data:
        cut = data.rfind(b"\n")
        try:
            last = json.loads(data[cut + 1:])
            if isinstance(last, dict):
                return data + b"\n", last
        except ValueError:
            pass
        logger.warning("Skipping line %d of %s: it is cut short (its writer stopped "
                       "mid-line): %r", data.count(b"\n") + 1, path, data[cut + 1:][:80])
        data = data[:cut] if cut > 0 else b""
    return b"", {}


def _json_rows(data: bytes, path: Optional[str]) -> List[Dict[str, Any]]:
    """The records of ``data``, one a line; a line that is not a JSON object is skipped,
    with one warning per file naming it and the lines."""
    rows, bad = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            bad.append((number, str(exc)))
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append((number, f"a JSON {type(row).__name__}, not an object"))
    if len(bad) == 1:
        logger.warning("Skipping line %d of %s: not a JSON record (%s)", bad[0][0],
                       path or RESULT_FILE, bad[0][1])
    elif bad:
        numbers = ", ".join(str(n) for n, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
        logger.warning("Skipping lines %s of %s: not JSON records (line %d: %s)", numbers,
                       path or RESULT_FILE, *bad[0])
    return rows


def _flatten_table(table: pa.Table) -> pa.Table:
    """Struct columns to ``a/b`` columns, in ``pd.json_normalize``'s order: top-level
    plain keys first, then each nested dict's keys; empty dicts vanish."""
    plain: List[Tuple[str, Any]] = []
    nested: List[Tuple[str, Any]] = []

    def walk(name: str, col: Any, out: List[Tuple[str, Any]]) -> None:
        if not pa.types.is_struct(col.type):
            out.append((name, col))
            return
        for f, child in zip(col.type, col.flatten()):
            walk(name + DELIMITER + f.name, child, nested)

    for name, col in zip(table.column_names, table.columns):
        walk(name, col, plain)
    if not nested and len(plain) == table.num_columns:
        return table
    cols = plain + nested
    return pa.table([c for _, c in cols], names=[n for n, _ in cols])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            df[name] = col.to_pylist()  # Ray's frames hold Python lists, not numpy arrays
    return df


def _frame_rowwise(data: bytes, path: Optional[str] = None) -> pd.DataFrame:
    # Mixed types per key, blank lines, corrupt lines...: Ray's own (row-wise) reader.
    return pd.json_normalize(_json_rows(data, path), sep=DELIMITER)


def _frame_from_json_lines(data: bytes, path: Optional[str] = None) -> pd.DataFrame:
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=_JSON_READ_OPTIONS)
        if table.num_rows == data.count(b"\n"):
            return _to_pandas(_flatten_table(table))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _frame_rowwise(data, path)


def frames_from_json_lines(datas: Sequence[bytes], lasts: Sequence[Dict[str, Any]],
                           paths: Optional[Sequence[str]] = None) -> Sequence[pd.DataFrame]:
    """Parse many trials' result.json contents (complete lines) into one frame each;
    ``paths`` name the files in warnings about corrupt lines.

    All trials are parsed in one pyarrow call (per-call overhead dominates for small
    files), then split - each trial's frame when it is first asked for (cutting 10,000
    frames out of the table took 2.3 s of reading an experiment back). A column that is
    null in part of the combined table is fixed up per trial so each frame equals what
    parsing that trial alone gives: all-null columns the trial never reported are dropped,
    integer/bool columns get their dtype back. When the trials disagree on a key's type,
    each is parsed on its own.
    """
    paths = list(paths) if paths is not None else [None] * len(datas)

    def one_by_one() -> List[pd.DataFrame]:
        return [_frame_from_json_lines(d, p) for d, p in zip(datas, paths)]

    if len(datas) <= 1:
        return one_by_one()
    counts = [d.count(b"\n") for d in datas]
    try:
        table = pajson.read_json(
            io.BytesIO(b"".join(datas)),
            read_options=pajson.ReadOptions(use_threads=True, block_size=1 << 22),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return one_by_one()
    if table.num_rows != sum(counts):
        return one_by_one()
    return _SplitFrames(_flatten_table(table), counts, lasts, datas=datas)


class _SplitFrames(Sequence):
    """The per-trial frames of one combined table, each cut out when first asked for."""

    def __init__(self, table: pa.Table, counts: List[int], lasts: Sequence[Dict[str, Any]],
                 datas: Optional[Sequence[bytes]] = None,
                 null_keys: Optional[Set[Tuple[int, str]]] = None):
        self.table, self.counts, self.lasts = table, counts, lasts   # kept by _readback
        self._nullable = {n: c.type for n, c in zip(table.column_names, table.columns)
                          if c.null_count}
        self._df = _to_pandas(table)
        self._bounds = np.cumsum([0] + counts)
        self._frames: Dict[int, pd.DataFrame] = {}
        self._columns: Optional[Dict[str, np.ndarray]] = None   # for last_row
        self._all_na = self._any_na = None
        # (trial, column) of the keys a trial reported, only ever as null, before its last
        # result: its own frame has them (a column of nulls); kept by _readback
        self.null_keys: Set[Tuple[int, str]] = null_keys or set()
        if self._nullable:
            owner = np.repeat(np.arange(len(counts)), counts)
            isna = self._df[list(self._nullable)].isna()
            self._all_na = isna.groupby(owner).all().to_numpy()
            self._any_na = isna.groupby(owner).any().to_numpy()
            if datas is not None:
                self.null_keys = self._find_null_keys(datas)

    def _find_null_keys(self, datas: Sequence[bytes]) -> Set[Tuple[int, str]]:
        found = set()
        names = list(self._nullable)
        for i, j in zip(*np.nonzero(self._all_na)):
            name = names[j]
            if unflattened_lookup(name, self.lasts[i], default=_MISSING) is not _MISSING:
                continue
            # the key's own name in the trial's lines (a nested key: its last part)
            token = json.dumps(name.rsplit(DELIMITER, 1)[-1]).encode() + b":"
            if token in datas[i] or token[:-1] + b" :" in datas[i]:
                found.add((int(i), name))
        return found

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        frame = self._frames.get(i)
        if frame is None:
            frame = self._frames[i] = self._cut(i)
        return frame

    def _cut(self, i: int) -> pd.DataFrame:
        start, end = self._bounds[i], self._bounds[i + 1]
        # a frame of its own (not a slice the user's edits would warn about), sharing data
        part = self._df.iloc[start:end].copy(deep=False)
        part.index = pd.RangeIndex(end - start)   # (reset_index costs twice as much)
        if not self._nullable:
            return part
        drop, cast = self._fixes(i)
        for name, dtype in cast.items():
            part[name] = part[name].astype(dtype)
        return part.drop(columns=drop) if drop else part

    def _fixes(self, i: int) -> Tuple[List[str], Dict[str, Any]]:
        """Trial ``i``'s columns to drop (null throughout and not in its last result) and
        to give their integer/bool dtype back (no null in its rows)."""
        drop, cast = [], {}
        for j, (name, typ) in enumerate(self._nullable.items()):
            if self._all_na[i, j]:
                if self._never_reported(i, name):
                    drop.append(name)
            elif not self._any_na[i, j] and (pa.types.is_integer(typ)
                                             or pa.types.is_boolean(typ)):
                cast[name] = typ.to_pandas_dtype()
        return drop, cast

    def last_row(self, i: int) -> Dict[str, Any]:
        """``frame.iloc[-1].to_dict()`` of trial ``i``'s frame, without making the frame."""
        return self.rows([i], [-1])[0]

    def rows(self, trials: Sequence[int], positions: Sequence[int]) -> List[Dict[str, Any]]:
        """``frame.iloc[k].to_dict()`` of each trial ``i``'s frame (``k`` from
        ``positions``, negative from the end), from the combined table's columns for the
        frames not made yet (one gather a column, not a frame a trial)."""
        out: List[Optional[Dict[str, Any]]] = [None] * len(trials)
        todo = []
        for n, (i, k) in enumerate(zip(trials, positions)):
            frame = self._frames.get(i)
            if frame is not None:
                out[n] = frame.iloc[k].to_dict()
            else:
                todo.append(n)
        if not todo:
            return out
        if self._columns is None:
            self._columns = {c: self._df[c].to_numpy() for c in self._df.columns}
        idx = np.asarray([trials[n] for n in todo], dtype=np.int64)
        pos = np.asarray([positions[n] for n in todo], dtype=np.int64)
        at = np.where(pos < 0, self._bounds[idx + 1], self._bounds[idx]) + pos
        names = list(self._columns)
        # tolist(): Python scalars, as Series.to_dict gives them
        columns = [values[at].tolist() for values in self._columns.values()]
        for n, i, cells in zip(todo, idx.tolist(), zip(*columns)):
            row = dict(zip(names, cells))
            if self._nullable:
                drop, cast = self._fixes(i)
                for name in drop:
                    del row[name]
                for name, dtype in cast.items():
                    row[name] = np.asarray(row[name]).astype(dtype).item()
            out[n] = row
        return out

    def best_positions(self, metric: str, mode: str) -> Optional[List[Optional[int]]]:
        """Per trial, the position in its frame of its best ``metric`` value (the first
        one, as ``idxmin``/``idxmax``): -1 when its frame has no ``metric`` column, None
        when that column holds no number. None for all when the column is not numeric
        throughout (ask each frame)."""
        if metric not in self._df.columns:
            return [-1] * len(self)
        try:
            values = pd.to_numeric(self._df[metric], errors="raise").to_numpy(
                dtype=float, na_value=math.nan)
        except (TypeError, ValueError):
            return None
        starts = self._bounds[:-1]
        owner = np.repeat(np.arange(len(self)), np.diff(self._bounds))
        with np.errstate(invalid="ignore"):   # NaN-only trials: no best, said below
            best = (np.fmax if mode == "max" else np.fmin).reduceat(values, starts)
        hit = np.flatnonzero(values == best[owner])
        first = np.full(len(self), -1, dtype=np.int64)
        trials, where = np.unique(owner[hit], return_index=True)
        first[trials] = hit[where] - starts[trials]
        out: List[Optional[int]] = first.tolist()
        j = list(self._nullable).index(metric) if metric in self._nullable else None
        for i in np.flatnonzero(first < 0).tolist():
            # no number: a column the trial never reported is not in its frame (-1)
            never = j is not None and self._all_na[i, j] and self._never_reported(i, metric)
            out[i] = -1 if never else None
        return out

    def _never_reported(self, i: int, name: str) -> bool:
        """Whether trial ``i``, whose ``name`` cells are all null, never reported the key
        (its own frame has no such column), rather than reported it as null."""
        return (unflattened_lookup(name, self.lasts[i], default=_MISSING) is _MISSING
                and (i, name) not in self.null_keys)


def _clean_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """Drop the NaN cells a flattened frame has where a report lacked a key."""
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v.item() if hasattr(v, "item") and not isinstance(v, (list, dict)) else v
    return out


def metric_stats(df: pd.DataFrame, metric: str, last_result: Optional[Dict[str, Any]] = None
                 ) -> Optional[Dict[str, float]]:
    """Ray's per-trial ``metric_analysis[metric]``: max, min, avg, last, last-5-avg, last-10-avg.

    None when the trial never reported ``metric`` as a number.
    """
    if df is None or metric not in df.columns:
        return None
    col = df[metric]
    try:
        if not pd.api.types.is_numeric_dtype(col.dtype):
            col = pd.to_numeric(col, errors="raise")
        values = col.to_numpy(dtype=float, na_value=math.nan)
    except (TypeError, ValueError):
        return None
    present = values[~pd.isna(values)]
    if not len(present):
        return None
    last = present[-1]
    if last_result:
        # A reported NaN is "last" in Ray even though the frame cannot tell it from a gap.
        reported = unflattened_lookup(metric, last_result, default=None)
        if isinstance(reported, (int, float)):
            last = float(reported)
    return {
        "max": float(present.max()),
        "min": float(present.min()),
        "avg": float(present.mean()),
        "last": float(last),
        "last-5-avg": float(present[-5:].mean()),
        "last-10-avg": float(present[-10:].mean()),
    }


# ---------------------------------------------------------------- trial dirs
@dataclass
class TrialData:
    """Everything read from one trial directory."""

    path: str
    # the frame, or what makes it when first asked for (``dataframe``)
    frame: Union[pd.DataFrame, Callable[[], pd.DataFrame]]
    last_result: Dict[str, Any]
    has_results: bool
    config: Optional[Dict[str, Any]] = None
    checkpoints: List[Tuple[Checkpoint, Dict[str, Any]]] = field(default_factory=list)
    has_error_file: bool = False
    latest: Optional[Checkpoint] = None  # set when ``checkpoints`` is not in dir order

    # the frame's last row without making the frame (set with a frame made lazily)
    last_row_source: Optional[Callable[[], Dict[str, Any]]] = None
    # the combined table the frame is cut from, and the trial's place in it
    split: Optional["_SplitFrames"] = field(default=None, repr=False)
    split_index: int = -1

    @property
    def dataframe(self) -> pd.DataFrame:
        """Every reported result, one row each (flattened ``a/b`` columns)."""
        if callable(self.frame):
            self.frame = self.frame()
        return self.frame

    def last_row(self) -> Optional[Dict[str, Any]]:
        """``dataframe.iloc[-1].to_dict()`` (None without results), cheaply when the frame
        is not made yet."""
        if callable(self.frame) and self.last_row_source is not None:
            return self.last_row_source()
        df = self.dataframe
        return None if df.empty else df.iloc[-1].to_dict()

    @property
    def latest_checkpoint(self) -> Optional[Checkpoint]:
        """The most recent checkpoint (highest index), or None."""
        if self.latest is not None:
            return self.latest
        return self.checkpoints[-1][0] if self.checkpoints else None


def _checkpoint_metrics(json_data: Optional[bytes],
                        df: Union[pd.DataFrame, Callable[[], pd.DataFrame]], names: Sequence[str]
                        ) -> Dict[str, Dict[str, Any]]:
    """The last reported result whose ``checkpoint_dir_name`` is each of ``names``."""
    out: Dict[str, Dict[str, Any]] = {}
    if json_data:
        # Only the few lines naming a checkpoint are parsed, straight from the bytes.
        for name in names:
            token, end = json.dumps(name).encode(), len(json_data)
            while (pos := json_data.rfind(token, 0, end)) >= 0:
                start = json_data.rfind(b"\n", 0, pos) + 1
                try:
                    row = json.loads(json_data[start:json_data.index(b"\n", pos)])
                except ValueError:  # a corrupt line (warned about with the frame)
                    row = {}
                if isinstance(row, dict) and row.get("checkpoint_dir_name") == name:
                    out[name] = row
                    break
                end = start
        return out
    df = df() if callable(df) else df
    if df.empty or "checkpoint_dir_name" not in df.columns:
        return {}
    rows = df[df["checkpoint_dir_name"].isin(list(names))]
    for i in range(len(rows)):  # progress.csv only: a handful of rows
        row = rows.iloc[i].to_dict()
        out[row["checkpoint_dir_name"]] = unflatten_dict(_clean_row(row))
    return out


@dataclass
class _RawTrial:
    path: str
    entries: List[str]
    json_data: Optional[bytes] = None   # complete lines of result.json
    last: Dict[str, Any] = field(default_factory=dict)
    csv_text: Optional[str] = None
    config: Optional[Dict[str, Any]] = None


def _read_raw(fs: pafs.FileSystem, path: str, read_params: bool) -> _RawTrial:
    entries = storage.list_dir(fs, path)
    raw = _RawTrial(path, entries)
    if RESULT_FILE in entries:
        result_file = storage.join(path, RESULT_FILE)
        raw.json_data, raw.last = _complete_json_lines(storage.read_bytes(fs, result_file),
                                                       result_file)
    elif PROGRESS_FILE in entries:
        raw.csv_text = storage.read_text(fs, storage.join(path, PROGRESS_FILE))
    if read_params:
        raw.config = _read_config(fs, path, entries)
        if raw.config is not None:
            raw.last = exact_config_in(raw.last, raw.config)
    return raw


def _read_config(fs: pafs.FileSystem, path: str, entries: List[str]) -> Optional[Dict[str, Any]]:
    """The trial's config: params.pkl's objects when they unpickle here (a module the
    config's values come from may be missing), else params.json's JSON view."""
    from tunelib import _pickling

    if PARAMS_PKL in entries:
        try:
            config = _pickling.loads(storage.read_bytes(fs, storage.join(path, PARAMS_PKL)))
            if isinstance(config, dict):
                return config
        except Exception as exc:  # noqa: BLE001 - anything unpickling can raise
            logger.debug("%s cannot be unpickled here (%r); reading %s", PARAMS_PKL, exc,
                         PARAMS_FILE)
    if PARAMS_FILE in entries:
        try:
            config = json.loads(storage.read_text(fs, storage.join(path, PARAMS_FILE)))
            return config if isinstance(config, dict) else None
        except ValueError:
            pass
    return None


def _csv_frame(text: str) -> Tuple[pd.DataFrame, Dict[str, Any]]:
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"trial_id": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), {}
    return df, (unflatten_dict(_clean_row(df.iloc[-1].to_dict())) if len(df) else {})


def _finish(fs: pafs.FileSystem, raw: _RawTrial,
            df: Union[pd.DataFrame, Callable[[], pd.DataFrame]]) -> TrialData:
    names = [e for e in raw.entries if is_checkpoint_dir_name(e)]
    if names:
        names = sorted(
            e for e in storage.list_dir(fs, raw.path, dirs_only=True) if is_checkpoint_dir_name(e)
        )
    ck_metrics = _checkpoint_metrics(raw.json_data, df, names)
    checkpoints = [
        (Checkpoint(storage.join(raw.path, n), filesystem=fs), ck_metrics.get(n, {})) for n in names
    ]
    config = raw.config
    if config is None and isinstance(raw.last.get("config"), dict):
        config = raw.last["config"]
    return TrialData(
        path=raw.path, frame=df, last_result=raw.last,
        has_results=raw.json_data is not None or raw.csv_text is not None, config=config,
        checkpoints=checkpoints, has_error_file=ERROR_PKL in raw.entries or ERROR_FILE in raw.entries,
    )


def read_trial_dir(fs: pafs.FileSystem, trial_path: str, read_params: bool = True) -> TrialData:
    """Read one trial directory: results, checkpoints (+ their metrics), config."""
    return read_trial_dirs(fs, [trial_path], read_params)[0]


def read_trial_dirs(fs: pafs.FileSystem, paths: Sequence[str], read_params: bool = True
                    ) -> List[TrialData]:
    """Read many trial directories; files are fetched by parallel threads on remote
    storage, and every result.json is parsed in one vectorised pass."""
    if len(paths) <= 1 or storage.is_local(fs):
        raws = [_read_raw(fs, p, read_params) for p in paths]
    else:
        with ThreadPoolExecutor(min(_MAX_READ_THREADS, len(paths))) as pool:
            raws = list(pool.map(lambda p: _read_raw(fs, p, read_params), paths))
    with_json = [r for r in raws if r.json_data]
    frames = frames_from_json_lines([r.json_data for r in with_json], [r.last for r in with_json],
                                    [storage.join(r.path, RESULT_FILE) for r in with_json])
    by_id = {id(r): i for i, r in enumerate(with_json)}
    out = []
    for raw in raws:
        last_row = None
        if id(raw) in by_id:
            df = functools.partial(frames.__getitem__, by_id[id(raw)])
            if isinstance(frames, _SplitFrames):
                last_row = functools.partial(frames.last_row, by_id[id(raw)])
        elif raw.csv_text is not None:
            df, raw.last = _csv_frame(raw.csv_text)
        else:
            df = pd.DataFrame()
        data = _finish(fs, raw, df)
        data.last_row_source = last_row
        if last_row is not None:
            data.split, data.split_index = frames, by_id[id(raw)]
        out.append(data)
    return out


def load_error(fs: pafs.FileSystem, trial_path: str, pickled_name: Optional[str] = ERROR_PKL,
               text_name: Optional[str] = ERROR_FILE) -> Optional[Exception]:
    """The trial's exception: unpickled from error.pkl when that works without Ray,
    else a ``TrialFailedError`` carrying error.txt; None when neither file exists."""
    if pickled_name:
        try:
            data = storage.read_bytes(fs, storage.join(trial_path, pickled_name))
        except (FileNotFoundError, OSError):
            data = None
        if data is not None:
            try:
                err = pickle.loads(data)
                if isinstance(err, BaseException):
                    return err
            except Exception:  # noqa: BLE001 - a Ray or user class that is not importable here
                pass
    if text_name:
        try:
            text = storage.read_text(fs, storage.join(trial_path, text_name))
        except (FileNotFoundError, OSError):
            text = None
        if text is not None:
            return error_from_text(text)
    return None


_EXCEPTION_LINE = re.compile(r"^(\w+)(?::|$)")


def error_from_text(text: str) -> TrialFailedError:
    """A ``TrialFailedError`` carrying error.txt; when the trial's exception class (the
    last line's ``Name: message``) is a builtin one, also an instance of it, as Ray's
    ``RayTaskError(ValueError)`` is a ValueError. Nothing is imported to find the class.

    >>> isinstance(error_from_text("Traceback ...\\nValueError: boom"), ValueError)
    True
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    match = _EXCEPTION_LINE.match(lines[-1]) if lines else None
    cause = getattr(builtins, match.group(1), None) if match else None
    if not (isinstance(cause, type) and issubclass(cause, Exception)) \
            or issubclass(cause, TrialFailedError):
        return TrialFailedError(text)
    try:
        return _dual_error_class(cause)(text)
    except TypeError:  # an exception class whose constructor wants more (UnicodeError...)
        return TrialFailedError(text)


@functools.lru_cache(maxsize=None)
def _dual_error_class(cause: type) -> type:
    def __reduce__(self):  # pickles as the text, rebuilt the same way
        return error_from_text, (str(self),)

    return type(f"TrialFailedError({cause.__name__})", (TrialFailedError, cause),
                {"__reduce__": __reduce__, "__module__": __name__})


# ---------------------------------------------------------------- experiment dirs
def trial_from_dir(dirname: str, data: TrialData) -> Trial:
    """A Trial reconstructed from a trial dir alone (no experiment state was written)."""
    last = data.last_result
    trial_id = str(last.get("trial_id") or "")
    if not trial_id:
        m = _TRIAL_ID_RE.search(dirname)
        trial_id = m.group(1) if m else dirname
    trainable = dirname.split("_" + trial_id)[0] if trial_id in dirname else dirname
    if last.get("done"):
        status = TERMINATED
    elif data.has_error_file:
        status = ERROR
    else:
        status = RUNNING  # the driver died while this trial ran
    return Trial(
        trial_id=trial_id, config=data.config or {}, trainable_name=trainable,
        experiment_tag=str(last.get("experiment_tag", "")), dirname=dirname, status=status,
        last_result=dict(last), error_file=ERROR_FILE if data.has_error_file else None,
        checkpoint_dir_name=last.get("checkpoint_dir_name"), index=index_from_trial_id(trial_id),
    )


def is_trial_dir(fs: pafs.FileSystem, path: str, entries: Optional[List[str]] = None) -> bool:
    """True when ``path`` looks like a trial directory (params.json / result.json / progress.csv)."""
    entries = storage.list_dir(fs, path) if entries is None else entries
    return any(e in entries for e in (RESULT_FILE, PARAMS_FILE, PROGRESS_FILE))


def scan_trial_dirs(fs: pafs.FileSystem, experiment_path: str) -> List[str]:
    """Names of the subdirs of an experiment dir that look like trial dirs, sorted."""
    names = sorted(storage.list_dir(fs, experiment_path))
    return [
        n for n in names
        if not n.startswith(".") and is_trial_dir(fs, storage.join(experiment_path, n))
    ]
