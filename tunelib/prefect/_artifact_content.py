"""What the experiment's and its trials' Prefect artifacts say: keys, descriptions and data
(pure: no Prefect, no I/O; :mod:`tunelib.prefect._artifacts` decides when they are written).

On the experiment's flow run:

* ``<experiment>-leaderboard`` (table, a new version per rewrite): one row per trial -
  rank, best mark (★), trial, status, iterations, the experiment's metric, every other
  last-reported metric, the config (``config/...``), ``time_total_s`` - best first by the
  experiment's metric and mode (start order when there is none). At most
  :data:`MAX_LEADERBOARD_ROWS` rows (the best ones; the description says so).
* ``<experiment>-progress`` (progress): trials finished of the total (of those started
  when the total is not known in advance: ``num_samples=-1``, searchers).
* ``<experiment>-curves`` (markdown): every trial's learning curve as an inline SVG, the
  best emphasised, and the ``tunelib plot`` command for a full-resolution one.

On each trial's flow run:

* ``<experiment>-<trial id>-metrics`` (table): every reported result, one row per iteration
  (progress.csv's rows: ``training_iteration``, the trial's metrics, its times and
  checkpoints; Ray's other bookkeeping columns left out); at most
  :data:`~tunelib.prefect._trial_metrics.MAX_TABLE_ROWS` evenly spaced rows, the latest
  always; a small chart of the metric in its description.
* ``<experiment>-<trial id>-checkpoints`` (markdown; only for trials that reported
  checkpoints): links to its latest and its best checkpoint.

Numbers in tables are rounded to 6 significant digits (they are for reading; the files on
storage keep every digit). Keys are lowercase letters, digits and dashes (Prefect's rule).

Example::

    >>> experiment_key("My Exp_1", "leaderboard"), trial_key("My Exp_1", "a1b2_00003", "metrics")
    ('my-exp-1-leaderboard', 'my-exp-1-a1b2-00003-metrics')
"""

from __future__ import annotations

import json
import shlex
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, Iterable, List, Optional, Sequence

from tunelib._layout import to_json_value
from tunelib.prefect._payloads import AUTO_KEYS, artifact_key, key_slug, summary_text
from tunelib.prefect._svg_chart import Series, html_block, line_chart
from tunelib.prefect._trial_metrics import (
    CheckpointSeen,
    Objective,
    TrialMetrics,
    finite_number,
    flat_result,
)

MAX_LEADERBOARD_ROWS = 1000
MAX_CONFIG_COLUMNS = 20
MAX_METRIC_COLUMNS = 30
MAX_CURVES = 50
BEST_MARK = "★"
_FIXED_COLUMNS = ("rank", "best", "trial", "status", "iterations")
_TEXT_CELL_CHARS = 60


class ArtifactKind(StrEnum):
    """Prefect's artifact types the recorder writes."""

    TABLE = "table"
    MARKDOWN = "markdown"
    PROGRESS = "progress"


@dataclass(frozen=True)
class ArtifactBody:
    """An artifact to write: key, type, description (markdown) and data."""

    key: str
    kind: ArtifactKind
    description: str
    data: Any


@dataclass(frozen=True)
class ExperimentInfo:
    """What the artifacts need to know of the experiment (from experiment_started)."""

    name: str
    goal: Objective
    total: Optional[int] = None       # trials planned; None: not known in advance
    path: Optional[str] = None        # the experiment's folder (a path or URI)

    @classmethod
    def from_parameters(cls, name: str, parameters: Dict[str, Any]) -> "ExperimentInfo":
        total = parameters.get("total_trials")
        path = parameters.get("experiment_path")
        return cls(name, Objective(parameters.get("metric"), parameters.get("mode")),
                   total if isinstance(total, int) and total > 0 else None,
                   path if isinstance(path, str) and path else None)


# --------------------------------------------------------------------------- keys
def experiment_key(name: str, what: str) -> str:
    """The key of the experiment's ``what`` artifact (``leaderboard``, ``progress``...)."""
    return artifact_key(name, what)


def trial_key(name: str, trial_id: str, what: str) -> str:
    """The key of a trial's ``what`` artifact (``metrics``, ``checkpoints``)."""
    return artifact_key(name, f"{key_slug(trial_id) or 'trial'}-{what}")


# --------------------------------------------------------------------------- cells
def cell(value: Any) -> Any:
    """A table cell: numbers to 6 significant digits, short text, JSON for the rest."""
    if value is None or isinstance(value, (bool, int)):
        return value
    number = finite_number(value)
    if number is not None:
        return float(f"{number:.6g}")
    if isinstance(value, float):
        return None  # NaN, inf: Prefect's JSON has none
    text = value if isinstance(value, str) else json.dumps(to_json_value(value, finite=True))
    return text if len(text) <= _TEXT_CELL_CHARS else text[: _TEXT_CELL_CHARS - 1] + "…"


def _ordinal(n: int) -> str:
    """``2nd``, ``4th``... (strides are powers of two)."""
    return f"{n}{'nd' if n == 2 else 'th'}"


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _ordered_union(dicts: Iterable[Dict[str, Any]], skip: Iterable[str] = ()) -> List[str]:
    seen: Dict[str, None] = {}
    skipped = set(skip)
    for d in dicts:
        for k in d:
            if k not in skipped:
                seen.setdefault(k, None)
    return list(seen)


def ranked(trials: Iterable[TrialMetrics], goal: Objective) -> List[TrialMetrics]:
    """Best first by the experiment's metric; trials without it, then in start order."""
    return sorted(trials, key=lambda tm: (goal.sort_key(tm.value(goal)), tm.index))


def best_trial(order: Sequence[TrialMetrics], goal: Objective) -> Optional[TrialMetrics]:
    """The first of ``ranked`` trials when it has a value of the metric."""
    if order and goal.ranks and order[0].value(goal) is not None:
        return order[0]
    return None


# --------------------------------------------------------------------------- leaderboard
def leaderboard(info: ExperimentInfo, trials: Sequence[TrialMetrics], when: str) -> ArtifactBody:
    """The leaderboard table (see the module docstring); ``when`` goes in its description."""
    goal = info.goal
    order = ranked(trials, goal)
    best = best_trial(order, goal)
    shown = order[:MAX_LEADERBOARD_ROWS]
    metrics = _ordered_union((tm.last for tm in shown), skip=AUTO_KEYS)
    if goal.metric in metrics:
        metrics.remove(goal.metric)
    metrics = ([goal.metric] if goal.metric else []) + metrics[:MAX_METRIC_COLUMNS]
    configs = _ordered_union(tm.config for tm in shown)[:MAX_CONFIG_COLUMNS]
    rows = []
    for rank, tm in enumerate(shown, 1):
        row: Dict[str, Any] = {"rank": rank, "best": BEST_MARK if tm is best else "",
                               "trial": tm.name, "status": str(tm.status),
                               "iterations": tm.iterations}
        for k in metrics:
            row[k if k not in _FIXED_COLUMNS else f"metric/{k}"] = cell(tm.last.get(k))
        for k in configs:
            row[f"config/{k}"] = cell(tm.config.get(k))
        row["time_total_s"] = cell(tm.last.get("time_total_s"))
        rows.append(row)

    lines = []
    if best is not None:
        params = ", ".join(f"{k}={_fmt(cell(v))}" for k, v in list(best.config.items())[:6])
        lines.append(f"{BEST_MARK} **Best: {best.name}** — {goal.metric} = "
                     f"{_fmt(cell(best.value(goal)))} ({goal.mode})"
                     + (f" with {params}" if params else ""))
    elif goal.ranks:
        lines.append(f"No trial has reported `{goal.metric}` yet.")
    else:
        lines.append("No metric and mode set (`TuneConfig(metric=..., mode=...)`): trials in "
                     "start order, none marked best.")
    counts = summary_text({"status": str(tm.status)} for tm in trials)
    lines.append(f"{len(trials)} trials: {counts} · as of {when}.")
    if len(order) > len(shown):
        lines.append(f"The best {len(shown)} of {len(order)} trials are shown.")
    return ArtifactBody(experiment_key(info.name, "leaderboard"), ArtifactKind.TABLE,
                        "\n\n".join(lines), json.dumps(rows))


# --------------------------------------------------------------------------- progress
def progress(info: ExperimentInfo, trials: Sequence[TrialMetrics],
             final: bool = False) -> ArtifactBody:
    """Trials finished of the total (of those started when the total is not known)."""
    known = len(trials)
    finished = sum(1 for tm in trials if tm.finished)
    running = sum(1 for tm in trials if tm.status == "RUNNING")
    paused = sum(1 for tm in trials if tm.status == "PAUSED")
    total = info.total if info.total is not None and info.total >= known else None
    of = total if total is not None else known
    percent = 100.0 * finished / of if of else (100.0 if final else 0.0)
    tenths = min(10, int(percent // 10))
    bar = "█" * tenths + "░" * (10 - tenths)
    text = (f"{finished} of {total} trials finished" if total is not None else
            f"{finished} of {known} trials started so far finished (the total is not known "
            "in advance)")
    extra = [f"{n} {what}" for n, what in ((running, "running"), (paused, "paused")) if n]
    if extra:
        text += " · " + ", ".join(extra)
    if final:
        text += " · experiment ended"
    return ArtifactBody(experiment_key(info.name, "progress"), ArtifactKind.PROGRESS,
                        f"`{bar}` {percent:.0f}% · {text}", round(percent, 1))


# --------------------------------------------------------------------------- a trial's table
# Ray's columns a trial's table keeps beside its own metrics; the rest of progress.csv's
# bookkeeping (date, timestamp, pid, hostname, node_ip, trial_id, done, ...) says nothing
# per iteration and would double the bytes each table costs to write.
_TABLE_TIME_COLUMNS = ("time_this_iter_s", "time_total_s")


def _table_columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """training_iteration, the trial's own metrics, its times, its checkpoints."""
    keys = _ordered_union(rows)
    own = [k for k in keys if k not in AUTO_KEYS]
    times = [k for k in _TABLE_TIME_COLUMNS if k in keys]
    checkpoints = (["checkpoint_dir_name"]
                   if any(row.get("checkpoint_dir_name") for row in rows) else [])
    return (["training_iteration"] if "training_iteration" in keys else []) + own + times \
        + checkpoints


def trial_table(info: ExperimentInfo, tm: TrialMetrics, curve_key: Optional[str]) -> ArtifactBody:
    """The trial's metric table: its results, one row per iteration."""
    rows = [flat_result(r) for r in tm.results.items()]
    columns = _table_columns(rows)
    data = [{c: cell(row.get(c)) for c in columns} for row in rows]
    seen = tm.results.seen
    lines = [f"Every result trial **{tm.name}** reported ({tm.status}), one row per iteration: "
             "the rows of its progress.csv, without Ray's bookkeeping columns (date, pid, "
             "hostname...)."]
    if len(rows) < seen:
        lines.append(f"{len(rows)} of {seen} results shown: every "
                     f"{_ordinal(tm.results.stride)} and the latest (tables are capped at "
                     f"{tm.results.cap} rows); progress.csv in the trial's folder has them all.")
    points = tm.curve.items()
    if curve_key and points:
        lines.append(html_block(line_chart([Series(tm.name, points, emphasis=True)],
                                           x_label="training_iteration", y_label=curve_key,
                                           title=f"{curve_key} of {tm.name}", height=220)))
    return ArtifactBody(trial_key(info.name, tm.trial_id, "metrics"), ArtifactKind.TABLE,
                        "\n\n".join(lines), json.dumps(data))


# --------------------------------------------------------------------------- checkpoints
@dataclass(frozen=True)
class TrialFolder:
    """Where a trial's checkpoints are: its folder's URI and the checkpoint dirs in it
    (``None`` for either when it could not be found out)."""

    uri: Optional[str]
    checkpoints: Optional[List[str]] = None


def link_target(uri: str) -> str:
    """A URL for a path or URI: ``file://`` for local paths, percent-encoded."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{urllib.parse.quote(rest)}"
    return "file://" + urllib.parse.quote(uri if uri.startswith("/") else "/" + uri)


def _checkpoint_line(what: str, seen: CheckpointSeen, folder: TrialFolder,
                     goal: Objective) -> str:
    facts = []
    if seen.iteration is not None:
        facts.append(f"iteration {seen.iteration}")
    if seen.value is not None:
        facts.append(f"{goal.metric} = {_fmt(cell(seen.value))}")
    tail = f" — {', '.join(facts)}" if facts else ""
    if folder.uri is None:
        return f"- **{what}**: `{seen.name}` (in the trial's folder){tail}"
    uri = f"{folder.uri.rstrip('/')}/{seen.name}"
    return f"- **{what}**: [{seen.name}](<{link_target(uri)}>){tail}  \n  `{uri}`"


def checkpoint_links(info: ExperimentInfo, tm: TrialMetrics,
                     folder: TrialFolder) -> Optional[ArtifactBody]:
    """Links to the trial's latest and best checkpoints; None when it reported none."""
    latest = tm.latest_checkpoint
    if latest is None:
        return None
    goal = info.goal
    best = tm.best_checkpoint(goal, folder.checkpoints) if goal.ranks else None
    lines = [f"Checkpoints of trial **{tm.name}**:", "",
             _checkpoint_line("Latest", latest, folder, goal)]
    if best is not None and best.name != latest.name:
        lines.append(_checkpoint_line(f"Best by {goal.metric} ({goal.mode})", best, folder,
                                      goal))
    elif best is not None:
        lines.append(f"- **Best by {goal.metric} ({goal.mode})**: the latest one")
    if folder.checkpoints is not None and latest.name not in folder.checkpoints:
        lines += ["", "The latest checkpoint is no longer on storage (checkpoint retention)."]
    if folder.uri:
        lines += ["", f"The trial's folder: `{folder.uri}`"]
    elif info.path:
        lines += ["", f"The trial's folder under `{info.path}` was not found."]
    text = "\n".join(lines)
    return ArtifactBody(trial_key(info.name, tm.trial_id, "checkpoints"), ArtifactKind.MARKDOWN,
                        f"Latest and best checkpoints of trial {tm.name}", text)


# --------------------------------------------------------------------------- curves
def plot_command(info: ExperimentInfo, metric: str) -> str:
    """The ``tunelib plot`` command drawing the experiment's curves at full resolution."""
    target = info.path or info.name
    mode = f" --mode {info.goal.mode}" if info.goal.ranks and metric == info.goal.metric else ""
    return f"tunelib plot {shlex.quote(target)} --metric {shlex.quote(metric)}{mode}"


def learning_curves(info: ExperimentInfo, trials: Sequence[TrialMetrics],
                    curve_key: Optional[str]) -> Optional[ArtifactBody]:
    """Every trial's learning curve of ``curve_key`` (the best :data:`MAX_CURVES`), the best
    trial emphasised; None before any trial reported the metric."""
    if not curve_key:
        return None
    drawn = [tm for tm in ranked(trials, info.goal) if tm.curve.seen]
    if not drawn:
        return None
    best = best_trial(ranked(trials, info.goal), info.goal)
    series = [Series(f"{BEST_MARK} {tm.name}" if tm is best else tm.name, tm.curve.items(),
                     emphasis=tm is best) for tm in drawn[:MAX_CURVES]]
    svg = line_chart(series, x_label="training_iteration", y_label=curve_key,
                     title=f"{curve_key} of {info.name}")
    notes = []
    if best is not None:
        notes.append(f"{BEST_MARK} Best trial: **{best.name}** ({info.goal.metric} = "
                     f"{_fmt(cell(best.value(info.goal)))}, {info.goal.mode}).")
    if len(drawn) > MAX_CURVES:
        notes.append(f"The best {MAX_CURVES} of {len(drawn)} trials are drawn.")
    notes.append("Curves are drawn from at most "
                 f"{max((tm.curve.cap for tm in drawn), default=0)} evenly spaced points each.")
    notes.append(f"Full resolution, on a machine that sees the experiment's storage: "
                 f"`{plot_command(info, curve_key)}`")
    text = "\n\n".join([f"### Learning curves: {curve_key}", html_block(svg), *notes])
    return ArtifactBody(experiment_key(info.name, "curves"), ArtifactKind.MARKDOWN,
                        f"Learning curves of {curve_key}, {len(drawn)} trials", text)


def curve_metric(info: ExperimentInfo, first_result: Dict[str, Any]) -> Optional[str]:
    """The metric the curves show: the experiment's, else the first reported number."""
    if info.goal.metric:
        return info.goal.metric
    for k, v in flat_result(first_result).items():
        if k not in AUTO_KEYS and finite_number(v) is not None:
            return k
    return None
