"""ExperimentAnalysis: an experiment directory, read (``ray.tune.ExperimentAnalysis``).

Example::

    from tunelib.tune import ExperimentAnalysis

    ea = ExperimentAnalysis("~/ray_results/my_exp", default_metric="loss", default_mode="min")
    ea.best_config, ea.best_checkpoint
    ea.dataframe(metric="loss", mode="min")      # one row per trial
    ea.trial_dataframes[ea.best_trial.trial_id]  # one row per report
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import MutableMapping
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow.fs

from tunelib import _layout, _readback, _reader, storage
from tunelib.checkpoint import Checkpoint
from tunelib.error import TuneError
from tunelib.trial import StorageContext, Trial

__all__ = ["ExperimentAnalysis", "load_experiment"]

logger = logging.getLogger(__name__)

TRAINING_ITERATION = "training_iteration"
DEFAULT_METRIC = "_metric"
CONFIG_PREFIX = "config"
_SCOPES = ["all", "last", "avg", "last-5-avg", "last-10-avg"]


def _result_delimiter() -> str:
    return os.environ.get("TUNE_RESULT_DELIM", "/")


# the keys of a trial's runtime state read after loading (_apply_recorded_checkpoints,
# _error_for)
_RUNTIME_READ = ("best_checkpoints", "pickled_error_filename", "error_filename")


class ExperimentAnalysis:
    """Analyse the results of an experiment directory written by tunelib or Ray Tune.

    Args:
        experiment_checkpoint_path: the experiment dir (``storage_path/name``), or one
            ``experiment_state-*.json`` file in it. Local path or URI (``s3://...``).
        storage_filesystem: a ``pyarrow.fs.FileSystem`` to read with; the path is then
            taken as a path on it, prefix stripped.
        trials: the Trial records, when the caller has them already.
        default_metric: metric used when a method is called without one.
        default_mode: "min" or "max", used when a method is called without one.

    Raises:
        ValueError: the path holds neither an experiment state file nor trial dirs.
    """

    def __init__(
        self,
        experiment_checkpoint_path: Union[str, os.PathLike],
        *,
        storage_filesystem: Optional[pyarrow.fs.FileSystem] = None,
        trials: Optional[List[Trial]] = None,
        default_metric: Optional[str] = None,
        default_mode: Optional[str] = None,
    ):
        self.default_metric = default_metric
        if default_mode and default_mode not in ["min", "max"]:
            raise ValueError(f"`default_mode` has to be None or one of [min, max], got {default_mode!r}")
        self.default_mode = default_mode
        if self.default_metric is None and self.default_mode is not None:
            self.default_metric = DEFAULT_METRIC

        self._fs, path = storage.get_fs_and_path(experiment_checkpoint_path, storage_filesystem)
        path = str(path).rstrip("/") or path
        storage.invalidate_cache(self._fs, path)
        if path.endswith(".json"):
            self._experiment_fs_path = os.path.dirname(path)
            self._experiment_json_fs_path: Optional[str] = path
        else:
            self._experiment_fs_path = path
            self._experiment_json_fs_path = _layout.find_experiment_state(self._fs, path)

        self._data: Dict[str, _reader.TrialData] = {}
        self._runtime: Dict[str, Dict[str, Any]] = {}
        # the state file's fingerprint, when the trials were read from it (not a snapshot)
        self._state_read: Optional[_readback.Fingerprint] = None
        self._stats_cache: Dict[Tuple[str, str], Optional[Dict[str, float]]] = {}
        with _readback.gc_paused():
            self.trials = trials or self._load_trials()
        here = StorageContext(self._fs, self._experiment_fs_path)
        for trial in self.trials:  # as Ray does: the trials live where they were read
            if trial.experiment_storage is None:
                trial.set_storage(here)
        if trials:
            self._read_trial_dirs(self.trials)
        self._trial_dataframes = _TrialFrames(self._data, [t.trial_id for t in self.trials])
        self._configs = self.get_all_configs()

    # ------------------------------------------------------------ loading
    def _trial_path(self, trial: Trial) -> str:
        if trial.path is not None:  # placed by its own run (tune.run of several experiments)
            return trial.path
        return storage.join(self._experiment_fs_path, trial.dirname) if trial.dirname else self._experiment_fs_path

    def _read_trial_dirs(self, trials: List[Trial]) -> None:
        datas = _reader.read_trial_dirs(self._fs, [self._trial_path(t) for t in trials], read_params=False)
        for trial, data in zip(trials, datas):
            self._data[trial.trial_id] = data
            # result.json is written by the trial itself and may be newer than the state.
            file_it = data.last_result.get(TRAINING_ITERATION, -1)
            state_it = trial.last_result.get(TRAINING_ITERATION, -1) if trial.last_result else -1
            if data.last_result and (not trial.last_result or file_it > state_it):
                trial.last_result = _layout.exact_config_in(data.last_result, trial.config)
            self._apply_recorded_checkpoints(trial, data)
            if data.latest_checkpoint is not None:
                trial.checkpoint = data.latest_checkpoint
                trial.checkpoint_dir_name = os.path.basename(data.latest_checkpoint.path)

    def _apply_recorded_checkpoints(self, trial: Trial, data: _reader.TrialData) -> None:
        # tunelib's state lists the trial's best checkpoints as Ray's checkpoint manager
        # holds them (worst first, the latest only when among the best) with their metrics
        # (runtime "best_checkpoints": [{"dir_name": ..., "metrics": {...}}]); Ray keeps
        # that in a pickle, so its experiments list every dir. Dirs no longer on storage
        # are left out.
        recorded = self._runtime.get(trial.trial_id, {}).get("best_checkpoints")
        if not isinstance(recorded, list) or not data.checkpoints:
            return
        by_name = {os.path.basename(c.path): (c, m) for c, m in data.checkpoints}
        kept = []
        for entry in recorded:
            if isinstance(entry, dict) and entry.get("dir_name") in by_name:
                ckpt, found = by_name[entry["dir_name"]]
                kept.append((ckpt, entry.get("metrics") or found))
        if kept:
            data.latest = data.latest_checkpoint
            data.checkpoints = kept

    def _load_trials(self) -> List[Trial]:
        if self._experiment_json_fs_path is not None:
            snapshot = _readback.load(self._fs, self._experiment_json_fs_path)
            if snapshot is not None:
                return self._trials_from_snapshot(snapshot)
            raw = storage.read_bytes(self._fs, self._experiment_json_fs_path)
            self._state_read = _readback.fingerprint(raw)
            try:
                # entry by entry, and only what is read later of each runtime state (the
                # rest, ~20 KB a trial as parsed JSON, was kept for nothing)
                state = _layout.parse_state(raw)
                del raw
                pairs = _layout.trials_from_state(state, keep=_RUNTIME_READ)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise TuneError(
                    f"Experiment state file {self._experiment_json_fs_path} is not valid JSON: {e}"
                ) from e
            del state
            trials = [t for t, _ in pairs]
            self._runtime = {t.trial_id: rt for t, rt in pairs}
            self._read_trial_dirs(trials)
            return trials
        # No state file (the driver died before writing one): the trial dirs tell all.
        names = _reader.scan_trial_dirs(self._fs, self._experiment_fs_path)
        if not names:
            where = storage.fs_uri(self._fs, self._experiment_fs_path)
            if _reader.is_trial_dir(self._fs, self._experiment_fs_path):
                hint = " This is a trial directory: read it with Result.from_path()."
            else:
                hint = ""
            raise ValueError(
                f"No experiment snapshot file of form 'experiment_state-*.json' and no trial "
                f"directories were found at {where!r}. Expected an experiment directory "
                f"(storage_path/name of a run).{hint}"
            )
        paths = [storage.join(self._experiment_fs_path, n) for n in names]
        datas = _reader.read_trial_dirs(self._fs, paths)
        trials = []
        for name, data in zip(names, datas):
            trial = _reader.trial_from_dir(name, data)
            if data.latest_checkpoint is not None:
                trial.checkpoint = data.latest_checkpoint
            self._data[trial.trial_id] = data
            trials.append(trial)
        return trials

    def _trials_from_snapshot(self, snapshot: "_readback.Snapshot") -> List[Trial]:
        split = None
        if snapshot.table is not None:
            split = _reader._SplitFrames(snapshot.table, snapshot.counts, snapshot.lasts,
                                         null_keys=snapshot.null_keys)
        trials = []
        fs = self._fs
        for (trial, runtime), record in zip(snapshot.trials, snapshot.dirs):
            trials.append(trial)
            self._runtime[trial.trial_id] = runtime
            if record is None:
                continue
            path = self._trial_path(trial)
            data = _reader.TrialData(
                path=path, frame=pd.DataFrame, last_result=record.last_result,
                has_results=record.has_results, config=record.config,
                checkpoints=[(Checkpoint(storage.join(path, n), filesystem=fs), m)
                             for n, m in record.checkpoints],
                has_error_file=record.has_error_file,
                latest=(Checkpoint(storage.join(path, record.latest), filesystem=fs)
                        if record.latest else None))
            if record.split_index >= 0:
                i = record.split_index
                data.frame = functools.partial(split.__getitem__, i)
                data.last_row_source = functools.partial(split.last_row, i)
                data.split, data.split_index = split, i
            self._data[trial.trial_id] = data
            if data.latest_checkpoint is not None:
                trial.checkpoint = data.latest_checkpoint
        return trials

    def _keep_readback(self) -> None:
        """Leave what was read here for the next read of the experiment
        (``_readback``): called by ``fit()`` once its experiment has ended."""
        with _readback.gc_paused():
            self._save_readback()

    def _save_readback(self) -> None:
        if self._state_read is None or any(
                t.status in (Trial.RUNNING, Trial.PENDING) for t in self.trials):
            return
        split, dirs = None, []
        for trial in self.trials:
            data = self._data.get(trial.trial_id)
            if data is None:
                dirs.append(None)
                continue
            if data.split is None and data.has_results:   # progress.csv, mixed types
                return
            if data.split is not None:
                if split is not None and data.split is not split:
                    return
                split = data.split
            dirs.append(_readback.DirRecord(
                last_result=data.last_result, has_results=data.has_results,
                config=data.config,
                checkpoints=[(os.path.basename(c.path), m) for c, m in data.checkpoints],
                has_error_file=data.has_error_file,
                latest=os.path.basename(data.latest.path) if data.latest else None,
                split_index=data.split_index))
        try:
            _readback.save(self._fs, self._experiment_json_fs_path, self._state_read,
                           self.trials, self._runtime, dirs,
                           split.table if split else None, split.counts if split else [],
                           split.lasts if split else [], split.null_keys if split else set())
        except Exception as exc:  # noqa: BLE001 - only the next read's speed is at stake
            logger.debug("Could not keep the read-back snapshot: %r", exc)

    # ------------------------------------------------------------ per-trial helpers
    def _trial_data(self, trial: Trial) -> _reader.TrialData:
        return self._data[trial.trial_id]

    def _error_for(self, trial: Trial) -> Optional[Exception]:
        """The trial's exception (None unless it ended in ERROR), as ResultGrid shows it."""
        if trial.status != "ERROR":
            return None
        rt = self._runtime.get(trial.trial_id, {})
        pkl = rt.get("pickled_error_filename", _layout.ERROR_PKL)
        txt = rt.get("error_filename", trial.error_file or _layout.ERROR_FILE)
        err = _reader.load_error(self._fs, self._trial_path(trial), pkl or _layout.ERROR_PKL,
                                 txt or _layout.ERROR_FILE)
        if err is None and trial.error_msg:
            err = TuneError(trial.error_msg)
        return err

    def _metric_stats(self, trial: Trial, metric: str) -> Optional[Dict[str, float]]:
        key = (trial.trial_id, metric)
        if key not in self._stats_cache:
            data = self._data.get(trial.trial_id)
            df = data.dataframe if data is not None else None
            self._stats_cache[key] = _reader.metric_stats(df, metric, trial.last_result)
        return self._stats_cache[key]

    # ------------------------------------------------------------ public API
    def get_all_configs(self, prefix: bool = False) -> Dict[str, Dict]:
        """``{trial_id: config}``; with ``prefix``, flattened as ``{"config/lr": ...}``."""
        if not prefix:
            return {trial.trial_id: trial.config for trial in self.trials}
        return {trial.trial_id: _prefixed(trial.config) for trial in self.trials}

    @property
    def experiment_path(self) -> str:
        """The experiment directory, as a path on the experiment's filesystem."""
        return self._experiment_fs_path

    def _require_defaults(self, what: str, alt: str) -> None:
        if not self.default_metric or not self.default_mode:
            raise ValueError(
                f"To fetch the `{what}`, pass a `metric` and `mode` parameter to `tune.run()` "
                f"(or TuneConfig). Alternatively, use {alt} to set the metric and mode explicitly."
            )

    @property
    def best_trial(self) -> Trial:
        """The best trial by the default metric and mode (scope "last")."""
        self._require_defaults("best_trial", "the `get_best_trial(metric, mode)` method")
        return self.get_best_trial(self.default_metric, self.default_mode)

    @property
    def best_config(self) -> Dict:
        """The config of :attr:`best_trial`."""
        self._require_defaults("best_config", "the `get_best_config(metric, mode)` method")
        return self.get_best_config(self.default_metric, self.default_mode)

    @property
    def best_checkpoint(self) -> Checkpoint:
        """The best checkpoint of :attr:`best_trial`, by the default metric and mode."""
        self._require_defaults("best_checkpoint", "the `get_best_checkpoint(trial, metric, mode)` method")
        best_trial = self.best_trial
        if not best_trial:
            raise ValueError(
                f"No best trial found. Please check if you specified the correct default "
                f"metric ({self.default_metric}) and mode ({self.default_mode})."
            )
        return self.get_best_checkpoint(best_trial, self.default_metric, self.default_mode)

    @property
    def best_logdir(self) -> str:
        """The directory of :attr:`best_trial` (a path on the experiment filesystem)."""
        self._require_defaults("best_logdir", "`get_best_trial(metric, mode)`")
        return self._trial_path(self.best_trial)

    @property
    def best_dataframe(self) -> pd.DataFrame:
        """Every report of :attr:`best_trial`, one row each."""
        self._require_defaults("best_result", "`get_best_trial(metric, mode)`")
        return self.trial_dataframes[self.best_trial.trial_id]

    @property
    def best_result(self) -> Dict:
        """The last result of :attr:`best_trial`."""
        self._require_defaults("best_result", "`get_best_trial(metric, mode).last_result`")
        return self.best_trial.last_result

    @property
    def best_result_df(self) -> pd.DataFrame:
        """The last result of :attr:`best_trial` as a one-row frame indexed by trial_id."""
        best = _layout.flatten_dict(self.best_result, delimiter=_result_delimiter())
        return pd.DataFrame.from_records([best], index="trial_id")

    @property
    def results(self) -> Dict[str, Dict]:
        """``{trial_id: last result}``."""
        return {trial.trial_id: trial.last_result for trial in self.trials}

    @property
    def results_df(self) -> pd.DataFrame:
        """Every trial's last result, flattened, one row per trial, indexed by trial_id."""
        delim = _result_delimiter()
        return pd.DataFrame.from_records(
            [_layout.flatten_dict(t.last_result, delimiter=delim) for t in self.trials],
            index="trial_id",
        )

    @property
    def trial_dataframes(self) -> Mapping[str, pd.DataFrame]:
        """``{trial_id: frame of every report}`` (flattened ``a/b`` columns); each frame is
        made when first read."""
        return self._trial_dataframes

    def dataframe(self, metric: Optional[str] = None, mode: Optional[str] = None) -> pd.DataFrame:
        """One row per trial: its last result, or with ``metric`` and ``mode`` its best one.

        Columns: the flattened result keys, ``config/...`` and ``logdir`` (the trial id,
        as Ray puts it).
        """
        if mode and mode not in ["min", "max"]:
            raise ValueError(f"If set, `mode` has to be one of [min, max], got {mode!r}")
        if mode and not metric:
            raise ValueError(
                "If a `mode` is passed to `ExperimentAnalysis.dataframe(), you'll also have to pass a `metric`!"
            )
        with _readback.gc_paused():   # a row a trial: no garbage, many small objects
            return self._dataframe(metric, mode)

    def _dataframe(self, metric: Optional[str], mode: Optional[str]) -> pd.DataFrame:
        configs = self.get_all_configs(prefix=True)
        rows: Dict[str, Optional[Dict[str, Any]]] = dict.fromkeys(self._trial_dataframes)
        self._rows_from_tables(rows, metric, mode)
        for trial_id, row in rows.items():
            if row is not None:
                continue
            data = self._data.get(trial_id)
            if not mode and data is not None and trial_id not in self._trial_dataframes._set:
                rows[trial_id] = data.last_row()
                continue
            df = self._trial_dataframes[trial_id]
            if df.empty:
                continue
            idx = -1
            if mode and metric in df:
                try:
                    col = pd.to_numeric(df[metric], errors="raise")
                    idx = df.index.get_loc(col.idxmax() if mode == "max" else col.idxmin())
                except (TypeError, ValueError):
                    logger.warning("Non-numerical value(s) of %s in trial %s", metric, trial_id)
            rows[trial_id] = df.iloc[idx].to_dict()
        out = []
        for trial_id, row in rows.items():
            if row is None:   # a trial without results
                continue
            row.update(configs.get(trial_id, {}))
            row["logdir"] = trial_id
            out.append(row)
        return pd.DataFrame(out)

    def _rows_from_tables(self, rows: Dict[str, Optional[Dict[str, Any]]],
                          metric: Optional[str], mode: Optional[str]) -> None:
        """Fill in the rows of the trials whose frames lie in a combined table
        (``_reader._SplitFrames``), read from its columns: the last row, or with ``mode``
        the best by ``metric`` (the first of equals, as ``idxmin``/``idxmax``)."""
        by_split: Dict[int, Tuple[Any, List[str], List[int]]] = {}
        for trial_id in rows:
            data = self._data.get(trial_id)
            if data is None or data.split is None or trial_id in self._trial_dataframes._set:
                continue
            entry = by_split.setdefault(id(data.split), (data.split, [], []))
            entry[1].append(trial_id)
            entry[2].append(data.split_index)
        for split, trial_ids, indices in by_split.values():
            positions: List[Optional[int]] = [-1] * len(indices)
            if mode:
                best = split.best_positions(metric, mode)
                if best is None:   # not numeric throughout: each frame says
                    continue
                positions = [best[i] for i in indices]
            for trial_id, k in zip(trial_ids, positions):
                if k is None:
                    logger.warning("Non-numerical value(s) of %s in trial %s", metric, trial_id)
            found = split.rows(indices, [-1 if k is None else k for k in positions])
            rows.update(zip(trial_ids, found))

    def _checkpoints_with_metric(self, trial: Trial, metric: str, **default: Any
                                 ) -> List[Tuple[Checkpoint, Any]]:
        """``(checkpoint, value of metric)`` for the trial's best checkpoints; a checkpoint
        without ``metric`` raises KeyError unless a ``default=`` is given."""
        data = self._data.get(trial.trial_id)
        if data is None:
            return []
        return [(c, _layout.unflattened_lookup(metric, m, **default)) for c, m in data.checkpoints]

    def get_trial_checkpoints_paths(self, trial: Trial, metric: Optional[str] = None
                                    ) -> List[Tuple[str, Any]]:
        """``[(checkpoint path, metric value)]`` for the trial's kept checkpoints."""
        metric = metric or self.default_metric or TRAINING_ITERATION
        return [(c.path, v) for c, v in self._checkpoints_with_metric(trial, metric, default=None)]

    def get_best_checkpoint(self, trial: Trial, metric: Optional[str] = None,
                            mode: Optional[str] = None) -> Optional[Checkpoint]:
        """The best of the trial's best checkpoints (``Result.best_checkpoints``) by
        ``metric``; those whose value is NaN are skipped. None (and an error logged)
        when the trial kept no checkpoint.

        Example::

            ckpt = ea.get_best_checkpoint(ea.get_best_trial("loss", "min"), "loss", "min")

        Raises:
            KeyError: a kept checkpoint did not report ``metric`` (as in Ray).
        """
        metric = metric or self.default_metric or TRAINING_ITERATION
        mode = self._validate_mode(mode)
        pairs = [
            (c, v) for c, v in self._checkpoints_with_metric(trial, metric) if not np.isnan(v)
        ]
        if not pairs:
            logger.error(f"No checkpoints have been found for trial {trial}.")
            return None
        sign = -1 if mode == "min" else 1
        return max(pairs, key=lambda p: sign * p[1])[0]

    def get_best_trial(self, metric: Optional[str] = None, mode: Optional[str] = None,
                       scope: str = "last", filter_nan_and_inf: bool = True) -> Optional[Trial]:
        """The best trial by ``metric``/``mode`` over ``scope``.

        ``scope``: "last" (last value), "avg" (mean of all), "last-5-avg",
        "last-10-avg", or "all" (best value ever reported, per ``mode``).
        With a single trial, that trial is returned (as Ray does).
        """
        if len(self.trials) == 1:
            return self.trials[0]
        metric = self._validate_metric(metric)
        mode = self._validate_mode(mode)
        if scope not in _SCOPES:
            raise ValueError(
                f"ExperimentAnalysis: attempting to get best trial for metric {metric} for scope "
                f"{scope} not in {_SCOPES}. If you didn't pass a `metric` parameter to "
                "`tune.run()`, you have to pass one when fetching the best trial."
            )
        best_trial, best_score = None, None
        for trial in self.trials:
            stats = self._metric_stats(trial, metric)
            if stats is None:
                continue
            score = stats[mode] if scope == "all" else stats[scope]
            if filter_nan_and_inf and _reader.is_nan_or_inf(score):
                continue
            if best_score is None or (mode == "max" and score > best_score) or (
                mode == "min" and score < best_score
            ):
                best_trial, best_score = trial, score
        if not best_trial:
            logger.warning("Could not find best trial. Did you pass the correct `metric` parameter?")
        return best_trial

    def get_best_config(self, metric: Optional[str] = None, mode: Optional[str] = None,
                        scope: str = "last") -> Optional[Dict]:
        """The config of :meth:`get_best_trial`, or None."""
        best_trial = self.get_best_trial(metric, mode, scope)
        return best_trial.config if best_trial else None

    def get_last_checkpoint(self, trial: Optional[Trial] = None, metric: str = "training_iteration",
                            mode: str = "max") -> Optional[Checkpoint]:
        """Of the trial's best checkpoints (``Result.best_checkpoints``), the one with the
        highest training_iteration: the latest only when it is among the best, as in Ray.

        Without ``trial``, the best trial by ``metric``/``mode`` is used.
        """
        trial = trial or self.get_best_trial(metric, mode)
        return self.get_best_checkpoint(trial, TRAINING_ITERATION, "max")

    def _validate_metric(self, metric: Optional[str]) -> str:
        if not metric and not self.default_metric:
            raise ValueError(
                "No `metric` has been passed and `default_metric` has not been set. "
                "Please specify the `metric` parameter."
            )
        return metric or self.default_metric

    def _validate_mode(self, mode: Optional[str]) -> str:
        if not mode and not self.default_mode:
            raise ValueError(
                "No `mode` has been passed and `default_mode` has not been set. "
                "Please specify the `mode` parameter."
            )
        if mode and mode not in ["min", "max"]:
            raise ValueError(f"If set, `mode` has to be one of [min, max], got {mode!r}")
        return mode or self.default_mode


def load_experiment(
    experiment_path: str,
    storage_filesystem: Optional[pyarrow.fs.FileSystem] = None,
    default_metric: Optional[str] = None,
    default_mode: Optional[str] = None,
) -> ExperimentAnalysis:
    """Read an experiment directory; what ``fit()`` and ``Tuner.restore`` call at the end.

    Example::

        grid = ResultGrid(load_experiment("/tmp/results/exp", default_metric="loss",
                                          default_mode="min"))
    """
    return ExperimentAnalysis(
        experiment_path,
        storage_filesystem=storage_filesystem,
        default_metric=default_metric,
        default_mode=default_mode,
    )


def _prefixed(config: Dict[str, Any]) -> Dict[str, Any]:
    """``flatten_dict({"config": config})``; a config without nested dicts directly."""
    if any(isinstance(v, dict) for v in config.values()):
        return _layout.flatten_dict({CONFIG_PREFIX: config})
    return {f"{CONFIG_PREFIX}{_layout.DELIMITER}{k}": v for k, v in config.items()}


class _TrialFrames(MutableMapping):
    """``ExperimentAnalysis.trial_dataframes``: trial id -> its frame, made when first read
    (``_reader.TrialData.dataframe``); a dict's methods (items, copy, pop, update, ...)."""

    def __init__(self, data: Dict[str, "_reader.TrialData"], trial_ids: List[str]):
        self._data = data
        self._ids: Dict[str, None] = dict.fromkeys(trial_ids)
        self._set: Dict[str, pd.DataFrame] = {}   # frames the user put in

    def __getitem__(self, trial_id: str) -> pd.DataFrame:
        if trial_id in self._set:
            return self._set[trial_id]
        if trial_id not in self._ids or trial_id not in self._data:
            raise KeyError(trial_id)
        return self._data[trial_id].dataframe

    def __setitem__(self, trial_id: str, frame: pd.DataFrame) -> None:
        self._ids[trial_id] = None
        self._set[trial_id] = frame

    def __delitem__(self, trial_id: str) -> None:
        if trial_id not in self._ids:
            raise KeyError(trial_id)
        del self._ids[trial_id]
        self._set.pop(trial_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def copy(self) -> Dict[str, pd.DataFrame]:
        return dict(self.items())

    def __repr__(self) -> str:
        return repr(dict(self.items()))
