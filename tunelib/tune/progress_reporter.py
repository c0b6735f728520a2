"""``tunelib.tune.progress_reporter``: Ray's ``ray.tune.progress_reporter`` (defined in
``tunelib._reporters``, which documents what each ``verbose`` level prints).

Example::

    from tunelib.tune.progress_reporter import CLIReporter

    reporter = CLIReporter(parameter_columns=["lr"], metric_columns=["loss"])
"""

from tunelib._reporters import (
    CLIReporter,
    JupyterNotebookReporter,
    ProgressReporter,
    TuneReporterBase,
)
from tunelib._trial_progress import TrialProgressCallback

__all__ = ["CLIReporter", "JupyterNotebookReporter", "ProgressReporter",
           "TrialProgressCallback", "TuneReporterBase"]
