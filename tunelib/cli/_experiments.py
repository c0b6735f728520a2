"""Experiments on storage, as the CLI finds, opens and summarises them.

An experiment is a directory holding ``experiment_state-*.json`` (Ray's or tunelib's); a
storage directory holds experiments. Trials and results are read through tunelib's
readers (:class:`~tunelib.analysis.ExperimentAnalysis`); what the search optimised (metric,
mode) and when it started come from the experiment state's ``runner_data``. Mistakes the
user can fix raise :class:`CliError`, whose message names the path or metric and lists the
valid choices.

Example::

    from tunelib.cli._experiments import open_experiment

    exp = open_experiment("~/ray_results/my_exp")
    exp.metric, exp.mode, len(exp.analysis.trials)
"""

from __future__ import annotations

import difflib
import json
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from tunelib import _layout, storage
from tunelib._status_table import current_best_trial, status_counts
from tunelib.analysis import ExperimentAnalysis
from tunelib.cli._errors import CliError
from tunelib.error import TuneError
from tunelib.result import _AUTO_RESULT_KEYS
from tunelib.trial import Trial

__all__ = [
    "Experiment", "ExperimentSummary", "SearchProperties", "default_storage",
    "find_experiments", "format_time", "is_experiment", "locate", "open_experiment",
    "reported_metrics", "require_metric", "resolve_mode", "search_properties", "summarize",
    "summarize_storage",
]

MODES = ("min", "max")
# numeric keys of every result that are bookkeeping, not something to plot or rank by
_NOT_METRICS = frozenset({"pid", "timestamp"})


@dataclass(frozen=True)
class SearchProperties:
    """What the experiment state says about the search; None where it says nothing.

    Ray records the metric (``runner_data._metric``) but not the mode; tunelib records
    both (the mode under ``runner_data._tunelib``).
    """

    metric: Optional[str] = None
    mode: Optional[str] = None
    start_time: Optional[float] = None


@dataclass
class Experiment:
    """An opened experiment: its readers and what the search optimised."""

    name: str
    location: str            # as the user may pass it again: a local path or a URI
    analysis: ExperimentAnalysis
    search: SearchProperties

    @property
    def metric(self) -> Optional[str]:
        return self.search.metric

    @property
    def mode(self) -> Optional[str]:
        return self.search.mode

    def trials(self) -> List[Trial]:
        """The trials in creation order (Ray's state lists them in no fixed order)."""
        return sorted(self.analysis.trials, key=lambda t: (t.index, t.trial_id))


@dataclass
class ExperimentSummary:
    """One line of ``tunelib ls``; ``error`` is set when the experiment could not be read."""

    name: str
    location: str
    start_time: Optional[float]
    num_trials: int = 0
    status_counts: Optional[Dict[str, int]] = None
    metric: Optional[str] = None
    mode: Optional[str] = None
    best_value: Optional[float] = None
    best_trial_id: Optional[str] = None
    error: Optional[str] = None


# ------------------------------------------------------------------ locations


def default_storage() -> Tuple[object, str]:
    """``(fs, path)`` of the storage experiments go to when ``storage_path`` is not given
    (``TUNE_RESULT_DIR``, else ``~/ray_results``): the rule ``Tuner.fit()`` follows."""
    from tunelib.config import RunConfig
    from tunelib.runner import storage_root

    return storage_root(RunConfig())


def _fs_and_path(location: str) -> Tuple[object, str]:
    if "://" in location:
        return storage.get_fs_and_path(location)
    return storage.get_fs_and_path(os.path.abspath(os.path.expanduser(location)))


def _display(fs, path: str) -> str:
    return path if storage.is_local(fs) else storage.fs_uri(fs, path)


def is_experiment(fs, path: str) -> bool:
    """True when ``path`` holds an ``experiment_state-*.json``."""
    return _layout.find_experiment_state(fs, path) is not None


def find_experiments(fs, path: str) -> List[str]:
    """Names of the experiments directly under ``path``, sorted; ``[]`` if it is missing."""
    names = storage.list_dir(fs, path, dirs_only=True)
    return sorted(n for n in names
                  if not n.startswith(".") and is_experiment(fs, storage.join(path, n)))


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _not_found(location: str, fs, path: str, bare_name: bool) -> CliError:
    parent = os.path.dirname(path.rstrip("/")) or "/"
    names = find_experiments(fs, parent)
    message = f"No experiment at {location}."
    if bare_name:  # `tunelib show my_exp` also looks in the default storage
        default_fs, root = default_storage()
        message = (f"No experiment at {location} (neither in the current directory nor in "
                   f"the default storage {_display(default_fs, root)}).")
        if not names:
            fs, parent, names = default_fs, root, find_experiments(default_fs, root)
    if names:
        message += (f"\nExperiments in {_display(fs, parent)}: {', '.join(names)}."
                    + _did_you_mean(os.path.basename(path.rstrip("/")), names))
    else:
        message += " List the experiments of a storage directory with `tunelib ls STORAGE`."
    return CliError(message)


def locate(location: str) -> Tuple[object, str]:
    """``(fs, path)`` of an experiment given as a path, a URI, or a bare name of an
    experiment in the default storage; raises :class:`CliError` when nothing is there."""
    fs, path = _fs_and_path(location)
    if storage.exists(fs, path):
        return fs, path
    bare_name = "://" not in location and os.sep not in location and location not in (".", "..")
    if bare_name:
        default_fs, root = default_storage()
        candidate = storage.join(root, location)
        if is_experiment(default_fs, candidate):
            return default_fs, candidate
    raise _not_found(location, fs, path, bare_name)


# ------------------------------------------------------------------ reading


def search_properties(fs, path: str) -> SearchProperties:
    """Metric, mode and start time from the newest experiment state in ``path``."""
    state_path = _layout.find_experiment_state(fs, path)
    if state_path is None:
        return SearchProperties()
    try:
        state = json.loads(storage.read_bytes(fs, state_path))
    except (OSError, ValueError):
        return SearchProperties()
    runner = state.get("runner_data") if isinstance(state, dict) else None
    runner = runner if isinstance(runner, dict) else {}
    own = runner.get("_tunelib") if isinstance(runner.get("_tunelib"), dict) else {}
    metric = runner.get("_metric")
    mode = own.get("mode")
    start = runner.get("_start_time") or (state.get("stats") or {}).get("start_time")
    return SearchProperties(
        metric=metric if isinstance(metric, str) and metric else None,
        mode=mode if mode in MODES else None,
        start_time=float(start) if isinstance(start, (int, float)) else None,
    )


def open_experiment(location: str) -> Experiment:
    """Read the experiment at ``location`` (path, URI or a default-storage name)."""
    fs, path = locate(location)
    shown = _display(fs, path)
    if not is_experiment(fs, path):
        names = find_experiments(fs, path)
        if names:
            raise CliError(
                f"{shown} is a storage directory, not an experiment. Its experiments: "
                f"{', '.join(names)}. Pass one of them, e.g. {storage.join(shown, names[0])}."
            )
    try:
        analysis = ExperimentAnalysis(path, storage_filesystem=fs)
    except (ValueError, TuneError) as exc:
        raise CliError(f"No experiment at {shown}: {exc}") from None
    name = os.path.basename(path.rstrip("/"))
    return Experiment(name=name, location=shown, analysis=analysis,
                      search=search_properties(fs, path))


def reported_metrics(analysis: ExperimentAnalysis) -> List[str]:
    """Numeric result keys some trial reported a value for: the user's first, then the
    ones every result carries (``training_iteration``, ``time_total_s``...), each sorted."""
    import pandas as pd

    user, auto = set(), set()
    for df in analysis.trial_dataframes.values():
        for column in df.columns:
            if str(column).startswith("config/") or column in _NOT_METRICS:
                continue
            values = df[column]
            if (not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
                    or not values.notna().any()):
                continue
            (auto if column in _AUTO_RESULT_KEYS else user).add(str(column))
    return sorted(user) + sorted(auto)


def require_metric(experiment: Experiment, metric: str, what: str = "the metric") -> None:
    """Raise :class:`CliError` unless some trial reported ``metric``, listing those that were
    (``what`` names the role of the key in the message, e.g. "the x axis key")."""
    reported = reported_metrics(experiment.analysis)
    if metric in reported:
        return
    listed = ", ".join(reported) if reported else "none (no trial reported a numeric result)"
    raise CliError(f"No trial of {experiment.name} reported {what} {metric!r}. "
                   f"Reported metrics: {listed}.{_did_you_mean(metric, reported)}")


def resolve_mode(experiment: Experiment, metric: Optional[str],
                 mode: Optional[str]) -> Optional[str]:
    """The mode to rank ``metric`` by: the one given, else the experiment's own when
    ``metric`` is the metric it optimised."""
    if mode:
        return mode
    return experiment.mode if metric == experiment.metric else None


# ------------------------------------------------------------------ ls


def format_time(timestamp: Optional[float]) -> str:
    """Local time as ``2026-11-23 08:44:53``, "" when unknown."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def summarize(fs, path: str) -> ExperimentSummary:
    """The ``tunelib ls`` line of the experiment at ``path``."""
    name = os.path.basename(path.rstrip("/"))
    search = search_properties(fs, path)
    summary = ExperimentSummary(name=name, location=_display(fs, path),
                                start_time=search.start_time, metric=search.metric,
                                mode=search.mode)
    try:
        analysis = ExperimentAnalysis(path, storage_filesystem=fs)
    except (ValueError, TuneError, OSError) as exc:
        summary.error = f"unreadable: {exc}"
        return summary
    summary.num_trials = len(analysis.trials)
    summary.status_counts = status_counts(analysis.trials)
    best = current_best_trial(analysis.trials, search.metric, search.mode)
    if best is not None:
        summary.best_value, summary.best_trial_id = best.value, best.trial.trial_id
    return summary


def summarize_storage(location: Optional[str]) -> Tuple[str, List[ExperimentSummary]]:
    """``(shown storage path, summaries)`` of the experiments in a storage directory
    (default: :func:`default_storage`), oldest first; an experiment dir lists itself."""
    if location is None:
        fs, path = default_storage()
        if not storage.exists(fs, path):
            raise CliError(
                f"No experiments yet: the default storage {_display(fs, path)} does not exist "
                "(set TUNE_RESULT_DIR or pass a STORAGE path)."
            )
    else:
        fs, path = _fs_and_path(location)
        if not storage.exists(fs, path):
            parent = os.path.dirname(path.rstrip("/")) or "/"
            raise CliError(f"No storage directory at {location}."
                           + _did_you_mean_dir(fs, parent, os.path.basename(path)))
    paths = [path] if is_experiment(fs, path) else [
        storage.join(path, n) for n in find_experiments(fs, path)]
    summaries = [summarize(fs, p) for p in paths]
    summaries.sort(key=lambda s: (s.start_time or 0.0, s.name))
    return _display(fs, path), summaries


def _did_you_mean_dir(fs, parent: str, name: str) -> str:
    names = storage.list_dir(fs, parent, dirs_only=True)
    return _did_you_mean(name, [n for n in names if not n.startswith(".")])
