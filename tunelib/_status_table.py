"""Ray's trial status table (what ``CLIReporter`` prints), as data.

Pure: trials in, rows and columns out; no I/O, no terminal. ``tunelib show`` renders it
from an experiment on storage; the progress reporters (``tunelib._reporters``) render it
from the live trials.
The rules are Ray 2.60's ``progress_reporter``: rows grouped by status (RUNNING, PAUSED,
PENDING, TERMINATED, ERROR), a column per evaluated parameter, Ray's default metric
columns plus up to three inferred user metrics, and an error table of every trial that
left an error file (``*``: it failed, then terminated after a retry).

Example::

    from tunelib._status_table import format_cell, status_table

    table = status_table(trials, metric="loss", mode="min", experiment_path="/tmp/r/exp")
    table.columns        # ["Trial name", "status", "loc", "lr", "iter", "total time (s)", "loss"]
    [[format_cell(v) for v in row] for row in table.rows]
    str(table.best)      # "Current best trial: 1a2b3_00000 with loss=0.01 and parameters={'lr': 0.001}"
"""

from __future__ import annotations

import math
import numbers
import posixpath
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from tunelib import _layout
from tunelib._lifecycle import TrialStatus
from tunelib.result import _AUTO_RESULT_KEYS
from tunelib.trial import Trial

__all__ = [
    "BestTrial", "StatusTable", "best_trial_line", "current_best_trial", "default_metric_columns",
    "error_rows", "failed_trials", "format_cell", "status_counts", "status_table",
]

# Ray's TuneReporterBase.DEFAULT_COLUMNS: result key -> heading, shown when reported.
DEFAULT_METRIC_COLUMNS: Dict[str, str] = {
    "mean_accuracy": "acc",
    "mean_loss": "loss",
    "training_iteration": "iter",
    "time_total_s": "total time (s)",
    "timesteps_total": "ts",
    "episode_reward_mean": "reward",
}
INFER_LIMIT = 3
MAX_COLUMN_LENGTH = 20
# Ray's table order: live trials first, then the finished ones.
STATUS_ORDER = (TrialStatus.RUNNING, TrialStatus.PAUSED, TrialStatus.PENDING,
                TrialStatus.TERMINATED, TrialStatus.ERROR)
ERROR_COLUMNS = ["Trial name", "# failures", "error file"]
RETRIED_NOTE = "* The trial terminated successfully after retrying."


@dataclass(frozen=True)
class BestTrial:
    """The current best trial by its last reported ``metric``; ``str()`` is Ray's line."""

    trial: Trial
    metric: str
    value: Any
    parameters: Dict[str, Any]

    def __str__(self) -> str:
        return (f"Current best trial: {self.trial.trial_id} with {self.metric}={self.value} "
                f"and parameters={self.parameters}")


@dataclass
class StatusTable:
    """The trial table, the error table and the summary lines' data.

    ``rows`` hold raw values (numbers stay numbers, so renderers can align them; see
    :func:`format_cell`); ``row_trials[i]`` is the trial of ``rows[i]``.
    """

    columns: List[str]
    rows: List[List[Any]]
    row_trials: List[Trial]
    error_columns: List[str]
    error_rows: List[List[Any]]
    status_counts: Dict[str, int]
    best: Optional[BestTrial] = None
    metric: Optional[str] = None
    mode: Optional[str] = None
    # the error table has a trial marked ``*`` (see RETRIED_NOTE)
    has_retried: bool = False

    @property
    def num_trials(self) -> int:
        return len(self.rows)

    @property
    def trials_line(self) -> str:
        """Ray's ``Number of trials: 3 (1 ERROR, 2 TERMINATED)``."""
        counts = ", ".join(f"{n} {status}" for status, n in self.status_counts.items())
        return f"Number of trials: {self.num_trials} ({counts})"


def status_counts(trials: Sequence[Trial]) -> Dict[str, int]:
    """``{status: count}`` in status-name order, as Ray's summary line lists them.

    >>> status_counts([Trial(trial_id="a", config={}, trainable_name="f",
    ...                      status=TrialStatus.ERROR)])
    {'ERROR': 1}
    """
    counts: Dict[str, int] = {}
    for trial in trials:
        counts[str(trial.status)] = counts.get(str(trial.status), 0) + 1
    return dict(sorted(counts.items()))


def _is_summary_value(value: Any) -> bool:
    """Ray's VALID_SUMMARY_TYPES: plain numbers (not bools) and None."""
    return value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool))


def default_metric_columns(trials: Sequence[Trial], metric: Optional[str] = None,
                   limit: int = INFER_LIMIT) -> Dict[str, str]:
    """``{result key: heading}``: Ray's default columns, then the tuned ``metric``, then
    user metrics inferred from the last results (up to ``limit`` in all); only keys some
    trial reported are kept.

    >>> t = Trial(trial_id="a", config={}, trainable_name="f",
    ...           last_result={"training_iteration": 2, "loss": 0.5, "pid": 1})
    >>> default_metric_columns([t])
    {'training_iteration': 'iter', 'loss': 'loss'}
    """
    inferred: Dict[str, str] = {}
    if metric and metric not in DEFAULT_METRIC_COLUMNS:
        inferred[metric] = metric
    for trial in trials:
        for key, value in (trial.last_result or {}).items():
            if len(inferred) >= limit:
                break
            if (key not in DEFAULT_METRIC_COLUMNS and key not in _AUTO_RESULT_KEYS
                    and _is_summary_value(value)):
                inferred.setdefault(key, key)
    columns = {**DEFAULT_METRIC_COLUMNS, **inferred}
    return {
        key: heading for key, heading in columns.items()
        if any(_lookup(key, t.last_result) is not None for t in trials)
    }


def _lookup(key: str, mapping: Optional[Mapping]) -> Any:
    return _layout.unflattened_lookup(key, mapping or {}, default=None)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def current_best_trial(trials: Sequence[Trial], metric: Optional[str],
                       mode: Optional[str]) -> Optional[BestTrial]:
    """The trial whose last ``metric`` value is best for ``mode`` (Ray's reporter rule:
    trials without the metric, or with NaN, are skipped); None without metric and mode."""
    if not metric or mode not in ("min", "max"):
        return None
    sign = 1.0 if mode == "max" else -1.0
    best: Optional[Trial] = None
    best_score = -math.inf
    for trial in trials:
        value = _lookup(metric, trial.last_result)
        if _is_missing(value) or not isinstance(value, numbers.Number) \
                or isinstance(value, bool):
            continue
        if best is None or value * sign > best_score:
            best, best_score = trial, value * sign
    if best is None:
        return None
    params = {p: _lookup(p, best.config) for p in (best.evaluated_params or best.config)}
    return BestTrial(best, metric, _lookup(metric, best.last_result), params)


def best_trial_line(table: StatusTable) -> str:
    """The "Current best trial" line, or why there is none (Ray prints nothing then;
    from storage the reason is the useful part)."""
    if table.best is not None:
        return str(table.best)
    if not table.metric:
        return ("Current best trial: unknown (the experiment records no metric; "
                "pass --metric and --mode)")
    if not table.mode:
        return (f"Current best trial: unknown (the experiment records metric "
                f"{table.metric!r} but not its mode; pass --mode min or --mode max)")
    return f"Current best trial: none yet (no trial reported {table.metric!r})"


def _location(trial: Trial) -> str:
    """Ray's ``loc`` column: ``node_ip:pid`` of the last result."""
    result = trial.last_result or {}
    node_ip, pid = result.get("node_ip"), result.get("pid")
    if node_ip and pid:
        return f"{node_ip}:{pid}"
    return str(node_ip or "")


def _error_file(trial: Trial, experiment_path: Optional[str]) -> str:
    """Ray shows the error file's full path; the state records it relative to the trial."""
    if not experiment_path or not trial.error_file:
        return trial.error_file or ""
    return posixpath.join(experiment_path, trial.dirname, trial.error_file)


def status_table(
    trials: Sequence[Trial],
    *,
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    parameter_columns: Union[Sequence[str], Mapping[str, str], None] = None,
    metric_columns: Optional[Mapping[str, str]] = None,
    experiment_path: Optional[str] = None,
) -> StatusTable:
    """Build Ray's status table for ``trials`` (in the order given, grouped by status).

    Args:
        trials: the trials, in creation order.
        metric, mode: the tuned metric; with both, ``best`` is the current best trial.
        parameter_columns: config keys (``a/b`` for nested) to show, or ``{key: heading}``;
            default: every evaluated parameter of any trial, sorted.
        metric_columns: ``{result key: heading}``; default: :func:`default_metric_columns`.
        experiment_path: where the trial dirs are; error files are shown under it.
    """
    by_status: Dict[str, List[Trial]] = {}
    for trial in trials:
        by_status.setdefault(str(trial.status), []).append(trial)
    order = [str(s) for s in STATUS_ORDER]
    order += sorted(set(by_status) - set(order))  # a status Ray does not know: last
    ordered = [t for status in order for t in by_status.get(status, [])]

    if parameter_columns is None:
        parameter_columns = sorted(set().union(*[t.evaluated_params or {} for t in trials]))
    params = dict(parameter_columns) if isinstance(parameter_columns, Mapping) \
        else {p: p for p in parameter_columns}
    metrics = dict(metric_columns) if metric_columns is not None \
        else default_metric_columns(trials, metric)

    rows = [
        [str(t), str(t.status), _location(t)]
        + [_lookup(p, t.config) for p in params]
        + [_lookup(m, t.last_result) for m in metrics]
        for t in ordered
    ]
    failed = failed_trials(trials)
    return StatusTable(
        columns=["Trial name", "status", "loc", *params.values(), *metrics.values()],
        rows=rows,
        row_trials=ordered,
        error_columns=list(ERROR_COLUMNS),
        error_rows=error_rows(failed, experiment_path),
        status_counts=status_counts(trials),
        best=current_best_trial(trials, metric, mode),
        metric=metric,
        mode=mode,
        has_retried=any(t.status != TrialStatus.ERROR for t in failed),
    )


def failed_trials(trials: Sequence[Trial]) -> List[Trial]:
    """The trials that left an error file (failed at least once), in the order given."""
    return [t for t in trials if t.error_file]


def error_rows(failed: Sequence[Trial], experiment_path: Optional[str] = None) -> List[List[Any]]:
    """Ray's error table rows: name, failures (``*``: it terminated after a retry), file."""
    return [
        [str(t), f"{t.num_failures}{'' if t.status == TrialStatus.ERROR else '*'}",
         _error_file(t, experiment_path)]
        for t in failed
    ]


def format_cell(value: Any, max_len: int = MAX_COLUMN_LENGTH) -> str:
    """A cell as Ray's table shows it: floats with 6 significant digits, None empty,
    long strings cut to ``max_len`` from the left (``...`` + the tail).

    >>> format_cell(0.0067599999999999995), format_cell(None), format_cell("a" * 25)
    ('0.00676', '', '...aaaaaaaaaaaaaaaaa')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, numbers.Number):
        return str(value)
    text = str(value)
    return text if len(text) <= max_len else "..." + text[3 - max_len:]
