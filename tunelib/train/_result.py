"""``train.Result``: what ``Trainer.fit()`` returns (Ray Train V2's ``ray.train.Result``).

Ray Train keeps only the metrics reported *with a checkpoint*: ``metrics`` are those of
the latest checkpoint, ``metrics_dataframe`` has one row per checkpoint of
``best_checkpoints``, and each row holds exactly what rank 0 passed to
``train.report(metrics, checkpoint=...)`` (none of Tune's automatic fields). A trainer
runs as one Tune trial, whose directory keeps every report in ``result.json`` as Tune
writes it; the Train view is read from that directory here.

Example::

    result = trainer.fit()
    result.metrics                     # {"loss": 0.25, "epoch": 3}: the last checkpoint's
    result.metrics_dataframe["loss"]   # one row per kept checkpoint
    best = min(result.best_checkpoints, key=lambda c: c[1]["loss"])[0]
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd
import pyarrow.fs

from tunelib import _layout, _reader, storage
from tunelib.checkpoint import Checkpoint
from tunelib.config import CheckpointConfig
from tunelib.result import Result as _TuneResult

__all__ = ["Result"]

# The fields a trial session adds to every report of a function trainable
# (``TrialSession._autofill``): they are Tune's, not what the training function reported.
# A metric the function itself reports under one of these names (``timestamp``, ``done``)
# cannot be told from the session's and is left out too.
SESSION_FILLED_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration",
    "trial_id", "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip",
    "config", "time_since_restore", "iterations_since_restore",
})

CheckpointResult = Tuple[Checkpoint, Dict[str, Any]]


@dataclass
class Result(_TuneResult):
    """The outcome of ``Trainer.fit()``: the latest checkpoint and the metrics reported
    with it, every kept checkpoint with its metrics, and where the run's files are.

    Attributes:
        metrics: the metrics reported with the latest checkpoint (None without one).
        checkpoint: the latest reported checkpoint, or None.
        error: None: ``fit()`` raises ``TrainingFailedError`` instead.
        path: the run's directory (``TrainerName_<date>/TrainerName_<id>_00000_0_<date>``).
        metrics_dataframe: one row per checkpoint of ``best_checkpoints`` (None without
            checkpoints).
        best_checkpoints: ``(Checkpoint, metrics)`` of the checkpoints
            ``CheckpointConfig`` keeps, worst first when ranked by
            ``checkpoint_score_attribute``, else oldest first.
    """

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """Not available for a training run (Ray Train raises the same)."""
        raise DeprecationWarning(
            "The `config` property for a `ray.train.Result` is deprecated, "
            "since it is only relevant in the context of Ray Tune."
        )

    @classmethod
    def from_path(
        cls,
        path: Union[str, os.PathLike],
        storage_filesystem: Optional[pyarrow.fs.FileSystem] = None,
    ) -> "Result":
        """Read the Result of a finished ``Trainer.fit()`` from its run directory
        (``result.path``). As in Ray, the run's error is not read back and every
        checkpoint on storage is listed, oldest first.

        Example::

            result = train.Result.from_path(trainer.fit().path)
        """
        fs, fs_path = storage.get_fs_and_path(path, storage_filesystem)
        storage.invalidate_cache(fs, fs_path)
        if not storage.exists(fs, fs_path):
            raise RuntimeError(f"Experiment folder {fs_path} doesn't exist.")
        data = _reader.read_trial_dir(fs, fs_path, read_params=False)
        if not data.has_results and not data.checkpoints:
            raise RuntimeError(
                f"Failed to restore the Result object from {path!r}: it holds no results "
                "and no checkpoint. Pass the run directory of a Trainer.fit() (its "
                "result.path)."
            )
        return _from_trial_data(cls, fs, data, CheckpointConfig())


def from_trial_dir(fs: pyarrow.fs.FileSystem, trial_path: str,
                   checkpoint_config: Optional[CheckpointConfig]) -> Result:
    """The Train view of a trainer's trial directory (see the module docstring)."""
    data = _reader.read_trial_dir(fs, trial_path, read_params=False)
    return _from_trial_data(Result, fs, data, checkpoint_config or CheckpointConfig())


def _from_trial_data(cls, fs, data: _reader.TrialData, checkpoint_config: CheckpointConfig
                     ) -> Result:
    reported = [(ckpt, reported_metrics(row)) for ckpt, row in data.checkpoints]
    best = best_checkpoints(rank_checkpoints(reported, checkpoint_config), checkpoint_config)
    latest = reported[-1] if reported else None
    return cls(
        metrics=latest[1] if latest else None,
        checkpoint=latest[0] if latest else None,
        error=None,
        path=data.path,
        metrics_dataframe=pd.DataFrame([m for _, m in best]) if best else None,
        best_checkpoints=best,
        _storage_filesystem=fs,
    )


def reported_metrics(row: Dict[str, Any]) -> Dict[str, Any]:
    """What the training function reported: a result row without the session's fields.

    >>> reported_metrics({"loss": 0.5, "training_iteration": 3, "trial_id": "a_00000"})
    {'loss': 0.5}
    """
    return {k: v for k, v in row.items() if k not in SESSION_FILLED_KEYS}


def checkpoint_score(metrics: Dict[str, Any], checkpoint_config: CheckpointConfig
                     ) -> Tuple[bool, float]:
    """Ray Train's rank of a checkpoint by ``checkpoint_score_attribute`` (nested keys as
    ``a/b``): higher is better; NaN ranks lowest, then a missing value (-inf, negated
    for ``"min"``, as Ray does), then the values.

    >>> checkpoint_score({"loss": 0.1}, CheckpointConfig(checkpoint_score_attribute="loss",
    ...                                                   checkpoint_score_order="min"))
    (True, -0.1)
    """
    attribute = checkpoint_config.checkpoint_score_attribute
    value = _layout.flatten_dict(metrics).get(attribute, -math.inf) if attribute else -math.inf
    if not isinstance(value, numbers.Number):
        value = math.nan  # Ray refuses such a checkpoint; here it ranks with NaN
    score = (1.0 if checkpoint_config.checkpoint_score_order == "max" else -1.0) * value
    return (False, -math.inf) if math.isnan(score) else (True, score)


def rank_checkpoints(reported: List[CheckpointResult], checkpoint_config: CheckpointConfig
                     ) -> List[CheckpointResult]:
    """``reported`` (oldest first) in Ray Train's order: worst first by score, older first
    among equals; in report order without ``checkpoint_score_attribute``."""
    if not checkpoint_config.checkpoint_score_attribute:
        return list(reported)
    return sorted(reported, key=lambda item: checkpoint_score(item[1], checkpoint_config))


def best_checkpoints(ranked: List[CheckpointResult], checkpoint_config: CheckpointConfig
                     ) -> List[CheckpointResult]:
    """The ``num_to_keep`` best of ``ranked`` (all without a limit). The latest checkpoint
    stays on storage even when it is not among them, as in Ray; it is then only
    ``Result.checkpoint``."""
    keep = checkpoint_config.num_to_keep
    return list(ranked[-keep:]) if keep else list(ranked)
