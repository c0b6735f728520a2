"""tunelib's Prefect layer: the only code in tunelib that imports Prefect.

* :mod:`~tunelib.prefect.server` the Prefect API an experiment records into (the caller's,
  ``PREFECT_API_URL``'s, or an embedded server started for the experiment);
* :mod:`~tunelib.prefect.recorder_process` ``RecorderProcess``, the driver's recorder: runs
  ``PrefectRecorder`` in a process of its own (``_recorder_main``) that may outlive fit();
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

    recorder = create_recorder(window=0.5)   # returns at once; writes in its own process
"""

from __future__ import annotations

import os
from typing import Any

from tunelib.recording import NullRecorder, Recorder

__all__ = ["create_recorder", "RECORDER_ENV"]

# "thread": record on a thread of the driver (PrefectRecorder) instead of a process
RECORDER_ENV = "TUNELIB_RECORDER"
RECORDER_KINDS = ("process", "thread")


def create_recorder(enabled: bool = True, import_here: bool = False, **kwargs: Any) -> Recorder:
    """The recorder of an experiment: a :class:`~tunelib.recording.NullRecorder` when not
    ``enabled``; else one writing to Prefect.

    By default a :class:`~tunelib.prefect.recorder_process.RecorderProcess`: the writer,
    ``PrefectRecorder``, runs in a process of its own that drains in the background once
    fit() stops waiting (``TUNELIB_RECORD_WAIT_S``). The in-process
    :class:`~tunelib.prefect.recorder.PrefectRecorder` (a thread of this process) with a
    ``caller`` - fit() inside a user's flow or task: the caller's flow must not end before
    its subflow is recorded, and a temporary server Prefect started for it ends with this
    process, so close() waits for every record - or with ``TUNELIB_RECORDER=thread``.

    Returns at once: the Prefect import, the embedded server's start and every write happen
    elsewhere. ``kwargs`` go to ``PrefectRecorder`` (``window``, ``max_in_flight``,
    ``api_url``, ``server_env``, ``startup_timeout``, ``caller``: the ``CallerRun`` of the
    flow or task run fit() was called in, under which the experiment is recorded as a
    subflow; ``progress``: told what close() still waits for).

    ``import_here``: import Prefect on the calling thread first (when that thread imports
    it next anyway: two threads importing Prefect at once can break its plugin set-up,
    "Failed to initialize plugins").
    """
    if not enabled:
        return NullRecorder()
    kind = os.environ.get(RECORDER_ENV, "process") or "process"
    if kind not in RECORDER_KINDS:
        raise ValueError(f"{RECORDER_ENV}={kind!r} must be one of {', '.join(RECORDER_KINDS)}")
    if import_here:
        import prefect  # noqa: F401
    if kwargs.get("caller") is None and kind == "process":
        from tunelib.prefect.recorder_process import RecorderProcess

        kwargs.pop("caller", None)
        return RecorderProcess(**kwargs)
    from tunelib.prefect.recorder import PrefectRecorder

    return PrefectRecorder(**kwargs)
