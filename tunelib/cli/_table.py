"""The status table as the CLI names it: ``tunelib._status_table`` (shared with the
progress reporters, which must not import the CLI).

Example::

    from tunelib.cli._table import status_table
"""

from tunelib._status_table import (  # noqa: F401 - re-exported
    DEFAULT_METRIC_COLUMNS,
    RETRIED_NOTE,
    BestTrial,
    StatusTable,
    best_trial_line,
    current_best_trial,
    default_metric_columns,
    format_cell,
    status_counts,
    status_table,
)
