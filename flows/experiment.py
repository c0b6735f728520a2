"""Deployment entry point of the ``experiment`` flow (``flows/experiment.py:experiment`` in
deployments/prefect.yaml and deployments/deploy.py): a whole experiment run from a script,
``parameters={"name": ..., "script": "/path/to/script.py"}``.

The flow is defined in :mod:`tunelib.prefect.flows`; this file only names it for Prefect,
which loads entry points by file path.
"""

from tunelib.prefect.flows import experiment

__all__ = ["experiment"]
