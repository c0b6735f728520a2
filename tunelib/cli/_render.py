"""The CLI's tables on a console (rich): styled on a terminal, plain ASCII otherwise.

On a pipe or a file the output is Ray's ``psql`` look, uncoloured and never wrapped or
cut, so that ``tunelib show exp | grep ERROR`` sees whole rows.

Example::

    from tunelib.cli._render import make_console, print_status

    print_status(make_console(), "my_exp", "/tmp/results/my_exp", None, table)
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, List, Optional, Sequence, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from tunelib.cli._experiments import ExperimentSummary, format_time
from tunelib.cli._table import RETRIED_NOTE, StatusTable, best_trial_line, format_cell

__all__ = ["make_console", "print_experiments", "print_status"]

_STATUS_STYLES = {"RUNNING": "cyan", "PAUSED": "yellow", "PENDING": "dim",
                  "TERMINATED": "green", "ERROR": "bold red"}
# plain output is never wrapped: wide enough for any row
_PLAIN_WIDTH = 1_000_000


def make_console(file: Optional[TextIO] = None, stderr: bool = False) -> Console:
    """A console on ``file`` (default stdout, or stderr): styled when it is a terminal."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    isatty = getattr(stream, "isatty", lambda: False)
    if isatty():
        return Console(file=stream, highlight=False, emoji=False)
    return Console(file=stream, color_system=None, highlight=False, emoji=False,
                   width=_PLAIN_WIDTH, no_color=True, force_terminal=False)


def is_plain(console: Console) -> bool:
    return not console.is_terminal


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]],
           styles: Optional[List[str]] = None, right: Sequence[bool] = ()) -> Table:
    plain = is_plain(console)
    table = Table(box=box.ASCII2 if plain else box.ROUNDED, show_lines=False,
                  header_style="" if plain else "bold", pad_edge=True)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i < len(right) and right[i] else "left",
                         no_wrap=plain, overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(*[str(cell) for cell in row],
                      style=None if plain or not styles else styles[i])
    return table


def _numeric_columns(rows: Sequence[Sequence[Any]], width: int) -> List[bool]:
    """Columns whose values (where present) are all numbers: right-aligned, as Ray's."""
    return [
        any(_is_number(r[i]) for r in rows)
        and all(_is_number(r[i]) or r[i] is None for r in rows)
        for i in range(width)
    ]


def print_status(console: Console, name: str, location: str, start_time: Optional[float],
                 table: StatusTable) -> None:
    """Ray's status block: summary lines, the trial table, the error table."""
    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    line("== Status ==")
    started = f" (started {format_time(start_time)})" if start_time else ""
    line(f"Experiment: {name}{started}")
    line(best_trial_line(table))
    line(f"Result logdir: {location}")
    line(table.trials_line)
    if table.rows:
        best = table.best.trial if table.best is not None else None
        styles = [
            ("bold " if t is best else "") + _STATUS_STYLES.get(str(t.status), "")
            for t in table.row_trials
        ]
        # name, status and loc whole; parameters and metrics as Ray cuts them
        cells = [row[:3] + [format_cell(v) for v in row[3:]] for row in table.rows]
        console.print(_table(console, table.columns, cells, styles,
                             _numeric_columns(table.rows, len(table.columns))))
    if table.error_rows:
        line(f"Number of errored trials: {len(table.error_rows)}")
        console.print(_table(console, table.error_columns, table.error_rows,
                             right=(False, True, False)))
        if table.has_retried:
            line(RETRIED_NOTE)


def _best_cell(summary: ExperimentSummary) -> str:
    if not summary.metric:
        return ""
    if not summary.mode:
        return f"{summary.metric} (mode not recorded)"
    if summary.best_value is None:
        return f"{summary.metric}: none reported"
    return f"{summary.metric}={format_cell(summary.best_value)} ({summary.mode})"


def print_experiments(console: Console, location: str,
                      summaries: Sequence[ExperimentSummary]) -> None:
    """The ``tunelib ls`` table: one experiment a row."""
    console.print(f"Experiments in {location}: {len(summaries)}", markup=False,
                  highlight=False, soft_wrap=True)
    if not summaries:
        return
    rows = []
    for s in summaries:
        if s.error:
            statuses = s.error
        else:
            statuses = ", ".join(f"{n} {status}" for status, n in (s.status_counts or {}).items())
        rows.append([s.name, format_time(s.start_time), s.num_trials if not s.error else "",
                     statuses, _best_cell(s), s.best_trial_id or ""])
    console.print(_table(console, ["Experiment", "Started", "Trials", "Status", "Best",
                                   "Best trial"], rows,
                         right=(False, False, True, False, False, False)))
