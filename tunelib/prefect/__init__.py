"""tunelib's Prefect layer: the only code in tunelib that imports Prefect.

* :mod:`~tunelib.prefect.server` the Prefect API an experiment records into (the caller's,
  ``PREFECT_API_URL``'s, or an embedded server started for the experiment);
* :mod:`~tunelib.prefect.recorder` ``PrefectRecorder``, the one writer of an experiment's
  records (its parts: ``_record``, ``_trial_runs``, ``_op_queue``, ``_payloads``,
  ``_writes``; its artifacts: ``_artifact_book`` when, ``_artifact_content`` what, with
  ``_trial_metrics``, ``_svg_chart`` and ``_trial_dirs``, ``_artifacts`` the writes);
* :mod:`~tunelib.prefect.flows` the ``experiment`` and ``trial`` flows and the ``iteration``
  task (re-exported by the top-level ``flows/`` and ``tasks/`` entry points);
* :mod:`~tunelib.prefect.deployed_trial` what the trial flow runs on a ``prefect worker``;
* :mod:`~tunelib.prefect.workers_api` the Prefect-workers executor's client calls.

It sits below the engine: it may import tunelib's lower modules (the recording protocol,
the life-cycle vocabularies, the storage channel and trial runner of the workers executor),
and only the top layer (``tunelib.runner``, ``tunelib.executor.prefect_workers``) imports
it. Importing this package does not import Prefect; each module does when it is used.

Example::

    from tunelib.prefect import create_recorder

    recorder = create_recorder(window=0.5)   # returns at once; writes on its own thread
"""

from __future__ import annotations

from typing import Any

from tunelib.recording import NullRecorder, Recorder

__all__ = ["create_recorder"]


def create_recorder(enabled: bool = True, import_here: bool = False, **kwargs: Any) -> Recorder:
    """A recorder writing to Prefect (:class:`~tunelib.prefect.recorder.PrefectRecorder`),
    or a :class:`~tunelib.recording.NullRecorder` when not ``enabled``.

    Returns at once: the Prefect import, the embedded server's start and every write happen
    on the recorder's own thread. ``kwargs`` go to ``PrefectRecorder`` (``window``,
    ``max_in_flight``, ``api_url``, ``caller``: the ``CallerRun`` of the flow or task run
    fit() was called in, under which the experiment is recorded as a subflow;
    ``progress``: told what close() still waits for).

    ``import_here``: import Prefect on the calling thread first (when that thread imports
    it next anyway: two threads importing Prefect at once can break its plugin set-up,
    "Failed to initialize plugins").
    """
    if not enabled:
        return NullRecorder()
    if import_here:
        import prefect  # noqa: F401
    from tunelib.prefect.recorder import PrefectRecorder

    return PrefectRecorder(**kwargs)
