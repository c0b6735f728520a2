"""Tables on a console (rich): styled on a terminal, plain ASCII otherwise.

On a pipe or a file the output is Ray's ``psql`` look, uncoloured and never wrapped or
cut, so that ``tunelib show exp | grep ERROR`` (or a log file of an experiment) sees
whole rows. Shared by the CLI and the progress reporters.

Example::

    from tunelib._console import make_console, render_table

    console = make_console()
    console.print(render_table(console, ["Trial name", "loss"], [["f_00000", 0.1]]))
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, List, Optional, Sequence, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from tunelib._status_table import ERROR_COLUMNS, MAX_COLUMN_LENGTH, StatusTable, format_cell

__all__ = [
    "error_table", "is_plain", "make_console", "numeric_columns", "print_line", "render_table",
    "trial_table",
]

# plain output is never wrapped: wide enough for any row
_PLAIN_WIDTH = 1_000_000
# tabulate's "psql" format, which Ray's CLIReporter prints
PSQL = box.Box("+-++\n| ||\n|-+|\n| ||\n|-+|\n|-+|\n| ||\n+-++\n", ascii=True)
STATUS_STYLES = {"RUNNING": "cyan", "PAUSED": "yellow", "PENDING": "dim",
                 "TERMINATED": "green", "ERROR": "bold red"}


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


def print_line(console: Console, text: str) -> None:
    """One line as it is: no markup, no highlighting, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def render_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 styles: Optional[List[str]] = None, right: Sequence[bool] = ()) -> Table:
    """A table for ``console``: rounded and styled on a terminal, ASCII (``psql``) on a pipe.

    ``right[i]``: right-align column ``i``; ``styles[i]``: the style of row ``i``.
    """
    plain = is_plain(console)
    table = Table(box=PSQL if plain else box.ROUNDED, show_lines=False,
                  header_style="" if plain else "bold", pad_edge=True)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i < len(right) and right[i] else "left",
                         no_wrap=plain, overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(*[str(cell) for cell in row],
                      style=None if plain or not styles else styles[i])
    return table


def numeric_columns(rows: Sequence[Sequence[Any]], width: int) -> List[bool]:
    """Columns whose values (where present) are all numbers: right-aligned, as Ray's."""
    return [
        any(_is_number(r[i]) for r in rows)
        and all(_is_number(r[i]) or r[i] is None for r in rows)
        for i in range(width)
    ]


def trial_table(console: Console, table: StatusTable,
                max_column_length: int = MAX_COLUMN_LENGTH) -> Table:
    """The trial rows of ``table``: coloured by status, the best trial in bold; name,
    status and loc whole, parameters and metrics cut to ``max_column_length`` as Ray does."""
    best = table.best.trial if table.best is not None else None
    styles = [
        ("bold " if t is best else "") + STATUS_STYLES.get(str(t.status), "")
        for t in table.row_trials
    ]
    cells = [row[:3] + [format_cell(v, max_column_length) for v in row[3:]]
             for row in table.rows]
    return render_table(console, table.columns, cells, styles,
                        numeric_columns(table.rows, len(table.columns)))


def error_table(console: Console, rows: Sequence[Sequence[Any]]) -> Table:
    """Ray's error table of ``rows`` (``_status_table.error_rows``): trial, failures, file."""
    return render_table(console, ERROR_COLUMNS, rows, right=(False, True, False))
