"""The ``iteration`` task: one reported result of a trial. The recorder creates its task
runs directly (coalescing fast iterations into ``iteration 3-7``) with this task's
``task_key``; nothing runs it per iteration.

The task is defined in :mod:`tunelib.prefect.flows`; this file is where a Prefect user
looks for it.
"""

from tunelib.prefect.flows import iteration

__all__ = ["iteration"]
