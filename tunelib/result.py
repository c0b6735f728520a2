"""Result: the outcome of one trial (``ray.tune.Result`` / ``ray.train.Result``).

Example::

    from tunelib.tune import Result

    result = Result.from_path("~/ray_results/my_exp/train_fn_1a2b3_00000_0_lr=0.01_...")
    result.metrics["loss"], result.config, result.checkpoint
    result.metrics_dataframe["loss"].plot()
    best = result.get_best_checkpoint("loss", "min")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd
import pyarrow.fs

from tunelib import _layout, _reader, storage
from tunelib.checkpoint import Checkpoint

__all__ = ["Result"]

# Keys Ray adds to every result; left out of the repr (Ray's AUTO_RESULT_KEYS + blacklist).
_AUTO_RESULT_KEYS = {
    "training_iteration", "time_this_iter_s", "timesteps_total", "episodes_total",
    "trial_id", "experiment_id", "date", "timestamp", "time_total_s", "pid", "hostname",
    "node_ip", "config", "time_since_restore", "timesteps_since_restore",
    "iterations_since_restore", "experiment_tag", "done", "should_checkpoint",
    "checkpoint_dir_name", "episodes_this_iter", "timesteps_this_iter", "warmup_time",
}


@dataclass
class Result:
    """The final result of a trial: latest metrics, checkpoints, error, full history.

    Attributes:
        metrics: the latest reported metrics (nested, as reported).
        checkpoint: the latest persisted checkpoint, or None.
        error: the exception the trial ended with, or None.
        path: the trial directory on ``filesystem`` (``bucket/loc`` for ``s3://bucket/loc``).
        metrics_dataframe: every report, one row each, flattened ``a/b`` columns.
        best_checkpoints: ``(Checkpoint, metrics)`` of the trial's best ``num_to_keep``
            checkpoints (``CheckpointConfig``), worst first, by
            ``checkpoint_score_attribute`` or else by recency; the latest checkpoint is
            listed only when it is among them. ``Result.from_path`` cannot rank: it lists
            every checkpoint dir of the trial, oldest first, with its flattened result row.
    """

    metrics: Optional[Dict[str, Any]]
    checkpoint: Optional[Checkpoint]
    error: Optional[Exception]
    path: str
    metrics_dataframe: Optional["pd.DataFrame"] = None
    best_checkpoints: Optional[List[Tuple[Checkpoint, Dict[str, Any]]]] = None
    _storage_filesystem: Optional[pyarrow.fs.FileSystem] = None
    _items_to_repr = ["error", "metrics", "path", "filesystem", "checkpoint"]

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """The config of the trial (``metrics["config"]``), or None."""
        if not self.metrics:
            return None
        return self.metrics.get("config", None)

    @property
    def filesystem(self) -> pyarrow.fs.FileSystem:
        """The ``pyarrow.fs.FileSystem`` on which ``path`` and the checkpoints live."""
        return self._storage_filesystem or pyarrow.fs.LocalFileSystem()

    def _repr(self, indent: int = 0) -> str:
        shown = {k: getattr(self, k) for k in self._items_to_repr}
        if self.error:
            shown["error"] = type(self.error).__name__
        else:
            shown.pop("error")
        shown["filesystem"] = shown["filesystem"].type_name
        if self.metrics:
            shown["metrics"] = {k: v for k, v in self.metrics.items() if k not in _AUTO_RESULT_KEYS}
        cls_indent, kws_indent = " " * indent, " " * (indent + 2)
        kws = ",\n".join(f"{kws_indent}{k}={v!r}" for k, v in shown.items())
        return f"{cls_indent}{type(self).__name__}(\n{kws}\n{cls_indent})"

    def __repr__(self) -> str:
        return self._repr(indent=0)

    @classmethod
    def from_path(
        cls,
        path: Union[str, os.PathLike],
        storage_filesystem: Optional[pyarrow.fs.FileSystem] = None,
    ) -> "Result":
        """Read a Result from a trial directory on local or remote storage.

        Args:
            path: the trial directory (``/tmp/exp/trial_dir``, ``s3://bucket/exp/trial``).
            storage_filesystem: a filesystem to read with; ``path`` is then taken as a
                path on it, prefix already stripped.

        Example::

            >>> Result.from_path("/nonexistent/trial")
            Traceback (most recent call last):
            ...
            RuntimeError: Trial folder /nonexistent/trial doesn't exist!
        """
        fs, fs_path = storage.get_fs_and_path(path, storage_filesystem)
        storage.invalidate_cache(fs, fs_path)
        if not storage.exists(fs, fs_path):
            raise RuntimeError(f"Trial folder {fs_path} doesn't exist!")
        data = _reader.read_trial_dir(fs, fs_path, read_params=False)
        if not data.has_results:
            raise RuntimeError(
                f"Failed to restore the Result object from {path!r}: neither "
                f"{_layout.RESULT_FILE} nor {_layout.PROGRESS_FILE} exists in the trial folder "
                "(expected a trial directory)."
            )
        return cls(
            metrics=data.last_result,
            checkpoint=data.latest_checkpoint,
            error=_reader.load_error(fs, fs_path) if data.has_error_file else None,
            path=fs_path,
            metrics_dataframe=data.dataframe,
            best_checkpoints=_checkpoints_with_rows(data) or None,
            _storage_filesystem=fs,
        )

    def get_best_checkpoint(self, metric: str, mode: str) -> Optional[Checkpoint]:
        """The best of ``best_checkpoints`` by ``metric`` (``a/b`` reaches nested keys).

        Checkpoints without a value for ``metric`` are skipped.

        Example::

            best = result.get_best_checkpoint("loss", "min")

        Raises:
            RuntimeError: the trial kept no checkpoint, or none of its kept checkpoints
                reported ``metric`` (a misspelt metric name, most likely).
            ValueError: ``mode`` is not "min" or "max".
        """
        if not self.best_checkpoints:
            raise RuntimeError("No checkpoint exists in the trial directory!")
        if mode not in ["max", "min"]:
            raise ValueError(f'Unsupported mode: {mode}. Please choose from ["min", "max"]!')
        valid = [
            (ckpt, value)
            for ckpt, metrics in self.best_checkpoints
            if (value := _layout.unflattened_lookup(metric, metrics, default=None)) is not None
        ]
        if not valid:
            raise RuntimeError(
                f"Invalid metric name {metric}! "
                f"You may choose from the following metrics: {(self.metrics or {}).keys()}."
            )
        op = max if mode == "max" else min
        return op(valid, key=lambda pair: pair[1])[0]


def _checkpoints_with_rows(data: "_reader.TrialData") -> List[Tuple[Checkpoint, Dict[str, Any]]]:
    """Every checkpoint dir of the trial, oldest first, each with the last row of the
    metrics frame that names it (flattened keys, NaN where that report lacked a key),
    as Ray's ``Result.from_path`` pairs them; ``{}`` for a dir no row names."""
    df = data.dataframe
    last_row: Dict[str, int] = {}
    if df is not None and "checkpoint_dir_name" in df.columns:
        for pos, name in enumerate(df["checkpoint_dir_name"]):
            last_row[name] = pos
    out = []
    for ckpt, _ in data.checkpoints:
        pos = last_row.get(os.path.basename(ckpt.path.rstrip("/")))
        out.append((ckpt, {} if pos is None else df.iloc[pos].to_dict()))
    return out
