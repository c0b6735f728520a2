"""Ray's terminal output of an experiment: progress reporters and the trial result printer.

What is printed follows ``verbose`` as in Ray (its output engine with
``RAY_AIR_NEW_OUTPUT=0``, the one ``progress_reporter`` works with):

- 0: nothing;
- 1: a status block every ``max_report_frequency`` seconds (5) and at the end: the time,
  the scheduler, the resources in use, the current best trial, the number of trials by
  status and the errored trials with their error files;
- 2: also the trial table at the end, and one line per result (at most one per trial every
  5 s; always the last and on errors);
- 3 (Ray's default): also the trial table in every block, and each result in full.

A reporter the user builds (``CLIReporter()``) shows the table in every block at any
level from 1, as Ray's does (``print_intermediate_tables`` defaults to True there).

The table is ``tunelib._status_table``'s, drawn by rich: coloured boxes on a terminal,
Ray's plain ``psql`` look on a pipe or a file.

Example::

    from tunelib import tune
    from tunelib.tune import CLIReporter

    reporter = CLIReporter(metric_columns={"loss": "Loss"}, parameter_columns=["lr"],
                           max_report_frequency=10)
    tune.run(train_fn, config=space, progress_reporter=reporter, verbose=2)
"""

from __future__ import annotations

import collections
import datetime
import html
import io
import math
import numbers
import sys
import time
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from tunelib import _layout
from tunelib._console import error_table, make_console, print_line, trial_table
from tunelib._lifecycle import TrialStatus
from tunelib._status_table import (
    DEFAULT_METRIC_COLUMNS,
    RETRIED_NOTE,
    STATUS_ORDER,
    current_best_trial,
    default_metric_columns,
    error_rows,
    failed_trials,
    status_table,
)
from tunelib.trial import Trial

__all__ = [
    "CLIReporter", "JupyterNotebookReporter", "ProgressLoop", "ProgressReporter",
    "TuneReporterBase", "detect_reporter", "resource_usage_line", "sys_info_lines",
]

# Ray's metric used when a mode but no metric is given
_DEFAULT_METRIC = "_metric"

Columns = Union[List[str], Dict[str, str], None]


class ProgressReporter:
    """Reports an experiment's progress (Ray's ``ray.tune.ProgressReporter``).

    tunelib calls ``should_report(trials, done)`` after every step of the experiment loop
    and, when it returns True, ``report(trials, done, *sys_info)`` (``sys_info``: the
    scheduler's and the resources' lines); once more with ``done=True`` at the end.

    Example::

        class EveryTermination(ProgressReporter):
            def __init__(self):
                self.finished = 0

            def should_report(self, trials, done=False):
                finished = sum(t.status == "TERMINATED" for t in trials)
                new, self.finished = finished > self.finished, finished
                return new or done

            def report(self, trials, done, *sys_info):
                print(f"{self.finished}/{len(trials)} trials finished")
    """

    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None, **kwargs):
        """Called before the experiment starts, with its metric and mode (``TuneConfig``)."""

    def should_report(self, trials: List[Trial], done: bool = False) -> bool:
        raise NotImplementedError

    def report(self, trials: List[Trial], done: bool, *sys_info: str):
        raise NotImplementedError


def _check_columns(name: str, value: Columns) -> Columns:
    if value is None or isinstance(value, (list, dict)):
        return value
    if isinstance(value, (tuple, Mapping)):
        return dict(value) if isinstance(value, Mapping) else list(value)
    raise TypeError(f"`{name}` must be a list of names or a dict {{name: heading}}, "
                    f"got {type(value).__name__}: {value!r}.")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, numbers.Number) or isinstance(value, bool) or value < low:
        raise ValueError(f"`{name}` must be a number >= {low}, got {value!r}.")


def _add_column(columns: Union[List[str], Dict[str, str]], key: str,
                representation: Optional[str], kind: str) -> None:
    """Ray's ``add_*_column``: a new key, headed ``representation`` (a list of columns
    takes none other than the key itself)."""
    if key in columns:
        raise ValueError(f"Column {key} already exists.")
    if isinstance(columns, MutableMapping):
        columns[key] = representation or key
    elif representation is not None and representation != key:
        raise ValueError(f"`representation` cannot differ from `{kind}` if this reporter was "
                         f"initialized with a list of {kind} columns.")
    else:
        columns.append(key)


class TuneReporterBase(ProgressReporter):
    """What ``CLIReporter`` and ``JupyterNotebookReporter`` share (Ray's arguments).

    Args:
        metric_columns: result keys to show (``{key: heading}`` or a list); default: Ray's
            default columns plus up to ``infer_limit`` reported metrics.
        parameter_columns: config keys to show (``a/b`` nested); default: every searched one.
        total_samples: shown as ``Number of trials: 3/<total_samples>``; default: the
            experiment's.
        max_progress_rows / max_error_rows: rows of the trial / error table while running
            (each status keeps its share); the final block shows all.
        max_column_length: longer cells are cut to this many characters.
        max_report_frequency: at most one block every this many seconds.
        infer_limit: how many reported metrics become columns when ``metric_columns`` is
            not given.
        print_intermediate_tables: the trial table in every block, else only in the last
            one with ``verbose >= 2``. Default True, as Ray decides it when the reporter is
            built (from its default verbosity, 3); the reporter tunelib makes when none is
            passed shows them with ``verbose=3`` only.
        metric / mode: what "Current best trial" ranks by (default: ``TuneConfig``'s; giving
            both is an error, as in Ray).
        sort_by_metric: sort finished trials by ``metric`` in the table.
    """

    DEFAULT_COLUMNS = collections.OrderedDict(DEFAULT_METRIC_COLUMNS)

    def __init__(self, *, metric_columns: Columns = None, parameter_columns: Columns = None,
                 total_samples: Optional[int] = None, max_progress_rows: int = 20,
                 max_error_rows: int = 20, max_column_length: int = 20,
                 max_report_frequency: int = 5, infer_limit: int = 3,
                 print_intermediate_tables: Optional[bool] = None,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 sort_by_metric: bool = False):
        metric_columns = _check_columns("metric_columns", metric_columns)
        parameter_columns = _check_columns("parameter_columns", parameter_columns)
        for name, value in (("max_progress_rows", max_progress_rows),
                            ("max_error_rows", max_error_rows),
                            ("max_column_length", max_column_length)):
            _check_positive(name, value)
        _check_positive("max_report_frequency", max_report_frequency, allow_zero=True)
        _check_positive("infer_limit", infer_limit, allow_zero=True)
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}.")
        self._total_samples = total_samples
        self._metrics_override = metric_columns is not None
        self._inferred_metrics: Dict[str, str] = {}
        self._metric_columns = metric_columns if metric_columns is not None \
            else self.DEFAULT_COLUMNS.copy()
        self._parameter_columns = parameter_columns or []
        self._max_progress_rows = max_progress_rows
        self._max_error_rows = max_error_rows
        self._max_column_length = max_column_length
        self._infer_limit = infer_limit
        self._print_intermediate_tables = print_intermediate_tables
        self._max_report_freqency = max_report_frequency  # Ray's spelling
        self._last_report_time = 0.0
        self._start_time = time.time()
        self._metric = metric
        self._mode = mode
        self._sort_by_metric = sort_by_metric
        self._verbosity = 3

    # ------------------------------------------------------------------ Ray's setters
    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None, **kwargs):
        self.set_start_time(start_time)
        if self._total_samples is None:
            self.set_total_samples(total_samples)
        self.set_search_properties(metric=metric, mode=mode)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str]) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            raise ValueError(
                "You passed a `metric` or `mode` argument to `tune.TuneConfig()`, but the "
                "reporter you are using was already instantiated with their own `metric` "
                "and `mode` parameters. Either remove the arguments from your reporter or "
                "from your call to `tune.TuneConfig()`")
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self._metric is None and self._mode:
            self._metric = _DEFAULT_METRIC
        return True

    def set_total_samples(self, total_samples: Optional[int]) -> None:
        self._total_samples = total_samples

    def set_start_time(self, timestamp: Optional[float] = None) -> None:
        self._start_time = time.time() if timestamp is None else timestamp

    def _set_verbosity(self, verbose: int) -> None:
        self._verbosity = verbose

    def should_report(self, trials: List[Trial], done: bool = False) -> bool:
        if time.time() - self._last_report_time > self._max_report_freqency:
            self._last_report_time = time.time()
            return True
        return done

    def add_metric_column(self, metric: str, representation: Optional[str] = None) -> None:
        """Show ``metric`` (a result key) as a column headed ``representation``."""
        self._metrics_override = True
        _add_column(self._metric_columns, metric, representation, "metric")

    def add_parameter_column(self, parameter: str, representation: Optional[str] = None) -> None:
        """Show config key ``parameter`` as a column headed ``representation``."""
        _add_column(self._parameter_columns, parameter, representation, "parameter")

    # ------------------------------------------------------------------ the status block
    @property
    def _intermediate_tables(self) -> bool:
        return self._print_intermediate_tables in (None, True)

    def _metric_map(self, trials: Sequence[Trial]) -> Dict[str, str]:
        """``{result key: heading}`` of the metric columns some trial has a value for."""
        if not self._metrics_override and len(self._inferred_metrics) < self._infer_limit:
            self._inferred_metrics = {
                key: heading for key, heading in
                default_metric_columns(trials, None, self._infer_limit).items()
                if key not in self.DEFAULT_COLUMNS
            }
            self._metric_columns.update(self._inferred_metrics)
        columns = self._metric_columns
        mapping = dict(columns) if isinstance(columns, Mapping) else {k: k for k in columns}
        return {key: heading for key, heading in mapping.items()
                if any(_layout.unflattened_lookup(key, t.last_result or {}, default=None)
                       is not None for t in trials)}

    def _best_trial_line(self, trials: Sequence[Trial]) -> Optional[str]:
        metric = self._metric
        if not metric and len(self._inferred_metrics) == 1:
            metric = next(iter(self._inferred_metrics))
        best = current_best_trial(trials, metric, self._mode)
        if best is None:
            return None
        config = best.trial.last_result.get("config", best.trial.config) or {}
        keys = list(self._parameter_columns or config)
        params = {p: _layout.unflattened_lookup(p, config, default=None) for p in keys}
        return (f"Current best trial: {best.trial.trial_id} with {metric}={best.value} and "
                f"parameters={params}")

    def _status_block(self, trials: List[Trial], done: bool, *sys_info: str) -> List[Any]:
        """Ray's status block: lines (str) and tables (callables of the console)."""
        if self._sort_by_metric and (self._metric is None or self._mode is None):
            self._sort_by_metric = False
            warnings.warn("Both 'metric' and 'mode' must be set to be able to sort by "
                          "metric. No sorting is performed.", stacklevel=3)
        metrics = self._metric_map(trials)
        block: List[Any] = ["== Status ==", _time_passed_str(self._start_time, time.time()),
                            *sys_info]
        best_line = self._best_trial_line(trials)
        if best_line:
            block.append(best_line)
        if self._verbosity < 1 or not trials:
            return block
        block += [f"Result logdir: {path}" for path in _experiment_paths(trials)]
        block.append(_trials_line(trials, self._total_samples))
        if self._intermediate_tables or (self._verbosity >= 2 and done):
            block += self._trial_table(trials, metrics, None if done else self._max_progress_rows)
        block += _error_block(trials, None if done else self._max_error_rows)
        return block

    def _trial_table(self, trials: List[Trial], metrics: Dict[str, str],
                     max_rows: Optional[int]) -> List[Any]:
        by_status = _by_status(trials)
        if self._sort_by_metric:
            sign = -1 if self._mode == "max" else 1
            by_status[TrialStatus.TERMINATED] = sorted(
                by_status.get(TrialStatus.TERMINATED, []),
                key=lambda t: _sort_key(t, self._metric, sign))
        overflow = ""
        if max_rows is not None and len(trials) > max_rows:
            kept = _fair_filter(by_status, max_rows, self._sort_by_metric)
            hidden = [f"{len(by_status[s]) - len(kept[s])} {s}" for s in _ordered(by_status)
                      if len(by_status[s]) > len(kept[s])]
            overflow = f"... {len(trials) - max_rows} more trials not shown ({', '.join(hidden)})"
            by_status = kept
        shown = [t for status in _ordered(by_status) for t in by_status[status]]
        table = status_table(shown, metric=self._metric, mode=self._mode,
                             parameter_columns=self._parameter_columns or None,
                             metric_columns=metrics)
        length = self._max_column_length
        block: List[Any] = [lambda console: trial_table(console, table, length)]
        return block + ([overflow] if overflow else [])

    def _progress_str(self, trials: List[Trial], done: bool, *sys_info: str,
                      fmt: str = "psql", delim: str = "\n") -> str:
        """The status block as plain text (Ray's ``_progress_str``), tables in Ray's
        ``psql`` look, the only ``fmt`` drawn here."""
        if fmt != "psql":
            raise ValueError(f"`fmt` must be 'psql' (the tables tunelib draws), got {fmt!r}.")
        buffer = io.StringIO()
        _print_block(make_console(buffer), self._status_block(trials, done, *sys_info))
        return buffer.getvalue().replace("\n", delim)


class CLIReporter(TuneReporterBase):
    """Prints the status block on the terminal (Ray's ``ray.tune.CLIReporter``; see
    :class:`TuneReporterBase` for the arguments).

    Example::

        reporter = CLIReporter(max_progress_rows=10)
        reporter.add_metric_column("mean_accuracy", "acc")
        tune.Tuner(train_fn, run_config=tune.RunConfig(progress_reporter=reporter)).fit()
    """

    def report(self, trials: List[Trial], done: bool, *sys_info: str):
        _print_block(make_console(), self._status_block(trials, done, *sys_info))


class JupyterNotebookReporter(TuneReporterBase):
    """Shows the status block in a Jupyter notebook's cell output, updated in place
    (Ray's ``ray.tune.JupyterNotebookReporter``; ``overwrite`` clears the cell first).

    Example::

        tune.run(train_fn, progress_reporter=JupyterNotebookReporter(overwrite=True))
    """

    def __init__(self, *, overwrite: bool = True, metric_columns: Columns = None,
                 parameter_columns: Columns = None, total_samples: Optional[int] = None,
                 max_progress_rows: int = 20, max_error_rows: int = 20,
                 max_column_length: int = 20, max_report_frequency: int = 5,
                 infer_limit: int = 3, print_intermediate_tables: Optional[bool] = None,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 sort_by_metric: bool = False):
        super().__init__(
            metric_columns=metric_columns, parameter_columns=parameter_columns,
            total_samples=total_samples, max_progress_rows=max_progress_rows,
            max_error_rows=max_error_rows, max_column_length=max_column_length,
            max_report_frequency=max_report_frequency, infer_limit=infer_limit,
            print_intermediate_tables=print_intermediate_tables, metric=metric, mode=mode,
            sort_by_metric=sort_by_metric)
        if not _in_notebook():
            warnings.warn(
                "You are using the `JupyterNotebookReporter`, but not IPython/Jupyter-"
                "compatible environment was detected. If this leads to unformatted output "
                "(e.g. like <IPython.core.display.HTML object>), consider passing a "
                "`CLIReporter` as the `progress_reporter` argument to `tune.RunConfig()` "
                "instead.", stacklevel=2)
        self._overwrite = overwrite
        self._display_handle = None

    def report(self, trials: List[Trial], done: bool, *sys_info: str):
        self.display(self._progress_html(trials, done, *sys_info))

    def _progress_html(self, trials: List[Trial], done: bool, *sys_info: str) -> str:
        text = self._progress_str(trials, done, *sys_info)
        return f"<pre>{html.escape(text)}</pre>"

    def display(self, string: str) -> None:
        """Show ``string`` (HTML) in the cell; plain text where IPython is missing."""
        try:
            from IPython.display import HTML, clear_output, display
        except ImportError:
            print(html.unescape(string.removeprefix("<pre>").removesuffix("</pre>")))
            return
        if self._display_handle is None:
            if self._overwrite:
                clear_output(wait=True)
            self._display_handle = display(HTML(string), display_id=True)
        else:
            self._display_handle.update(HTML(string))


def _in_notebook() -> bool:
    """A Jupyter kernel has imported IPython long before any user code runs: where it is
    not imported yet, this is no notebook (importing it to ask costs 0.2-0.4 s)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def detect_reporter(verbose: int = 3) -> TuneReporterBase:
    """Ray's default: a ``JupyterNotebookReporter`` in a notebook, else a ``CLIReporter``."""
    tables = verbose >= 3  # Ray builds it once the run's verbosity is set
    if _in_notebook():
        return JupyterNotebookReporter(overwrite=verbose < 2, print_intermediate_tables=tables)
    return CLIReporter(print_intermediate_tables=tables)


# --------------------------------------------------------------------------- block pieces


def _time_passed_str(start_time: float, now: float) -> str:
    """``Current time: 2026-11-29 12:56:33 (running for 00:00:10.31)``."""
    current = datetime.datetime.fromtimestamp(now)
    rest = max(0.0, now - start_time)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    running = f"{days:.0f} days, " if days > 0 else ""
    running += f"{hours:02.0f}:{minutes:02.0f}:{seconds:05.2f}"
    return f"Current time: {current:%Y-%m-%d %H:%M:%S} (running for {running})"


def _experiment_paths(trials: Sequence[Trial]) -> List[str]:
    paths = {t.local_experiment_path or t.remote_experiment_path for t in trials}
    return sorted(p for p in paths if p)


def _by_status(trials: Sequence[Trial]) -> Dict[str, List[Trial]]:
    by_status: Dict[str, List[Trial]] = collections.defaultdict(list)
    for trial in trials:
        by_status[str(trial.status)].append(trial)
    return by_status


def _ordered(by_status: Dict[str, List[Trial]]) -> List[str]:
    """Statuses present, in the table's order (live first)."""
    known = [str(s) for s in STATUS_ORDER]
    return [s for s in known if by_status.get(s)] + sorted(s for s in by_status
                                                           if s not in known and by_status[s])


def _trials_line(trials: Sequence[Trial], total_samples: Optional[int]) -> str:
    """``Number of trials: 3/4 (1 PENDING, 2 TERMINATED)``."""
    by_status = _by_status(trials)
    counts = ", ".join(f"{len(by_status[s])} {s}" for s in sorted(by_status))
    total = ""
    if total_samples:
        total = "/infinite" if total_samples >= 2 ** 63 - 1 else f"/{total_samples}"
    return f"Number of trials: {len(trials)}{total} ({counts})"


def _sort_key(trial: Trial, metric: str, sign: int) -> Tuple[int, float]:
    value = _layout.unflattened_lookup(metric, trial.last_result or {}, default=None)
    if not isinstance(value, numbers.Number) or isinstance(value, bool) or math.isnan(value):
        return (1, 0.0)
    return (0, sign * float(value))


def _fair_filter(by_status: Dict[str, List[Trial]], max_trials: int,
                 sort_by_metric: bool) -> Dict[str, List[Trial]]:
    """Ray's share of rows per status: round-robin over the statuses until ``max_trials``,
    keeping the earliest trials of each (finished ones in metric order when sorted)."""
    counts: Dict[str, int] = collections.defaultdict(int)
    changed = True
    while max_trials > 0 and changed:
        changed = False
        for status in sorted(by_status):
            if max_trials > 0 and counts[status] < len(by_status[status]):
                changed = True
                max_trials -= 1
                counts[status] += 1
    kept = {}
    for status in sorted(by_status):
        trials = by_status[status]
        if not (status == TrialStatus.TERMINATED and sort_by_metric):
            trials = sorted(trials, key=lambda t: t.trial_id)
        kept[status] = trials[:counts[status]]
    return kept


def _error_block(trials: Sequence[Trial], max_rows: Optional[int]) -> List[Any]:
    """Ray's error table (or an empty line when no trial failed)."""
    failed = failed_trials(trials)
    if not failed:
        return [""]
    block: List[Any] = [f"Number of errored trials: {len(failed)}"]
    if max_rows is not None and len(failed) > max_rows:
        block.append(f"Table truncated to {max_rows} rows ({len(failed) - max_rows} overflow)")
        failed = failed[:max_rows]
    paths = _experiment_paths(failed)
    rows = error_rows(failed, paths[0] if paths else None)
    block.append(lambda console: error_table(console, rows))
    if any(t.status == TrialStatus.TERMINATED for t in failed):
        block.append(RETRIED_NOTE)
    return block


def _print_block(console, block: Sequence[Any]) -> None:
    for item in block:
        if callable(item):
            console.print(item(console))
        else:
            print_line(console, item)
    print_line(console, "")


# --------------------------------------------------------------------------- the loop


class ProgressLoop:
    """Ray's experiment loop around a reporter: after each step, ``report`` when
    ``should_report`` says so (``verbose >= 1``); at the end once more with ``done=True``.

    ``sys_info(trials)`` returns the lines shown under the time (scheduler, resources).
    """

    def __init__(self, reporter: ProgressReporter, verbose: int, metric: Optional[str] = None,
                 mode: Optional[str] = None,
                 sys_info: Optional[Callable[[Sequence[Trial]], Sequence[str]]] = None):
        if not callable(getattr(reporter, "should_report", None)) \
                or not callable(getattr(reporter, "report", None)):
            raise TypeError(
                "`progress_reporter` must be a tune.ProgressReporter (with `should_report` "
                f"and `report`), such as tune.CLIReporter(); got {type(reporter).__name__}.")
        self.reporter = reporter
        self.verbose = verbose
        self._metric, self._mode = metric, mode
        self._sys_info = sys_info or (lambda trials: [])

    def setup(self, total_samples: Optional[int]) -> None:
        if isinstance(self.reporter, TuneReporterBase):
            self.reporter._set_verbosity(self.verbose)
        setup = getattr(self.reporter, "setup", None)
        if setup is not None:
            setup(start_time=time.time(), total_samples=total_samples, metric=self._metric,
                  mode=self._mode)

    def report(self, trials: List[Trial], done: bool) -> None:
        if self.verbose >= 1 and self.reporter.should_report(trials, done=done):
            self.reporter.report(trials, done, *self._sys_info(trials))


def resource_usage_line(trials: Sequence[Trial], total_cpus: int, total_gpus: int) -> str:
    """Ray's ``Logical resource usage: 2.0/8 CPUs, 0/0 GPUs`` for the running trials."""
    running = [t for t in trials if t.status == TrialStatus.RUNNING]
    cpus = sum(t.resources.get("cpu", 0.0) for t in running)
    gpus = sum(t.resources.get("gpu", 0.0) for t in running)
    return (f"Logical resource usage: {float(cpus) if cpus else 0}/{total_cpus} CPUs, "
            f"{float(gpus) if gpus else 0}/{total_gpus} GPUs")


def sys_info_lines(scheduler: Any, total_resources: Optional[Tuple[int, int]]
                   ) -> Callable[[Sequence[Trial]], List[str]]:
    """What Ray's block shows under the time: the scheduler's debug string and the
    resources in use (``total_resources``: CPUs and GPUs, None when unknown)."""
    def lines(trials: Sequence[Trial]) -> List[str]:
        out = []
        try:
            if scheduler is not None:
                out.append(scheduler.debug_string())
        except NotImplementedError:
            pass
        if total_resources is not None:
            out.append(resource_usage_line(trials, *total_resources))
        return out

    return lines
