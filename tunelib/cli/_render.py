"""The CLI's tables on a console (rich): styled on a terminal, plain ASCII otherwise.

On a pipe or a file the output is Ray's ``psql`` look, uncoloured and never wrapped or
cut, so that ``tunelib show exp | grep ERROR`` sees whole rows.

Example::

    from tunelib.cli._render import make_console, print_status

    print_status(make_console(), "my_exp", "/tmp/results/my_exp", None, table)
"""

from __future__ import annotations

from typing import Optional, Sequence

from rich.console import Console

from tunelib._console import (
    error_table,
    is_plain,
    make_console,
    print_line,
    render_table,
    trial_table,
)
from tunelib._status_table import RETRIED_NOTE, StatusTable, best_trial_line, format_cell
from tunelib.cli._experiments import ExperimentSummary, format_time

__all__ = ["is_plain", "make_console", "print_experiments", "print_status"]


def print_status(console: Console, name: str, location: str, start_time: Optional[float],
                 table: StatusTable) -> None:
    """Ray's status block: summary lines, the trial table, the error table."""
    def line(text: str) -> None:
        print_line(console, text)

    line("== Status ==")
    started = f" (started {format_time(start_time)})" if start_time else ""
    line(f"Experiment: {name}{started}")
    line(best_trial_line(table))
    line(f"Result logdir: {location}")
    line(table.trials_line)
    if table.rows:
        console.print(trial_table(console, table))
    if table.error_rows:
        line(f"Number of errored trials: {len(table.error_rows)}")
        console.print(error_table(console, table.error_rows))
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
    console.print(render_table(console, ["Experiment", "Started", "Trials", "Status", "Best",
                                         "Best trial"], rows,
                               right=(False, False, True, False, False, False)))
