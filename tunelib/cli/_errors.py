"""The CLI's errors: what the user can fix, printed without a traceback.

Example::

    raise CliError("No experiment at /tmp/results/exq. Did you mean 'exp'?")
"""

from __future__ import annotations

__all__ = ["CliError", "MissingExtraError"]


class CliError(Exception):
    """A mistake the user can fix (a missing path, an unknown metric): exit code 2, a
    usage error as click reports them."""

    exit_code = 2


class MissingExtraError(ImportError):
    """An optional package a command needs is not installed; the message names the extra
    (``pip install 'tunelib[plot]'``). Exit code 1."""

    exit_code = 1
