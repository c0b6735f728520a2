"""Deployment entry point of the ``trial`` flow (``flows/trial.py:trial`` in
deployments/prefect.yaml and deployments/deploy.py): one run per trial attempt, executed by
a ``prefect worker`` for ``tunelib.tune.PrefectWorkers``.

The flow is defined in :mod:`tunelib.prefect.flows`; this file only names it for Prefect,
which loads entry points by file path.
"""

from tunelib.prefect.flows import trial

__all__ = ["trial"]
