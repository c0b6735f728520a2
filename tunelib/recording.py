"""Recording an experiment in Prefect, as seen by the engine.

The controller calls a :class:`Recorder` from its hot loop (thousands of times a second):
every method only enqueues ``(kind, time.time(), args)`` on a ``queue.SimpleQueue`` and
returns. A single writer thread in the driver (``tunelib.prefect.recorder.PrefectRecorder``,
made by ``tunelib.prefect.create_recorder``) turns the events into Prefect writes through the
REST API. This module imports no Prefect, and nothing of ``tunelib.prefect``: that layer
builds on this one.

``trial_attached(trial_id, flow_run_id)`` comes from an executor whose trials are flow runs
Prefect's engine runs (the Prefect-workers executor's deployment runs), right after it
created the trial's run and before the controller's ``trial_started``: the recorder then
adds the trial's records to that run instead of creating one.

``trial_finished(status=...)`` takes a ``TrialOutcome``: ``TERMINATED`` (the trainable
returned), ``STOPPED`` (a scheduler, a stopper or the end of the experiment stopped it
early; Ray calls this TERMINATED too, the message says who stopped it), ``CANCELLED`` (its
Prefect run was cancelled from the UI or CLI), ``INTERRUPTED`` (the experiment was
interrupted - Ctrl-C, SIGTERM, the experiment run's Cancel - and the trial resumes when the
experiment is resumed) or ``ERROR`` (failed for good). ``experiment_finished`` takes an
``ExperimentOutcome`` (``CANCELLED``: interrupted, resumable).

Logs: ``trial_logs(trial_id, records)`` carries a trial's captured output, each record a
``LogLine`` ``(time.time(), levelno, logger name, message)`` (stdout lines are level INFO
logger ``stdout``; stderr WARNING ``stderr``); executors call it in batches, never per line.
``experiment_log(level, message)`` is a line of the experiment's own output (progress
lines, the final summary).

Cancel: ``watch_cancel(callback)`` asks the recorder to call ``callback(None)`` when the
experiment's run is cancelled in Prefect and ``callback(trial_id)`` when one trial's run
is; it is called from the recorder's thread (the controller only sets a flag).

``run_context(trial_id=None)`` is the Prefect run a trial (or, with None, the experiment)
is recorded as: ``RunContext(api_url, flow_run_id)``, or None while it is not created yet
(or nothing is recorded). Never blocks.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Protocol, runtime_checkable

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome

__all__ = ["Recorder", "NullRecorder", "QueueRecorder", "LogLine", "RunContext"]


class LogLine(NamedTuple):
    """One captured line of a trial's output."""

    t: float          # time.time() when it was written
    level: int        # logging level (stdout: INFO, stderr: WARNING)
    logger: str       # logger name ("stdout", "stderr" for the streams)
    message: str


class RunContext(NamedTuple):
    """Where a run is recorded: the Prefect API and the flow run's id."""

    api_url: str
    flow_run_id: str


CancelCallback = Callable[[Optional[str]], None]


@runtime_checkable
class Recorder(Protocol):
    stats: Dict[str, Any]

    def experiment_started(self, name: str, parameters: dict, tags: List[str]) -> None: ...

    def trial_attached(self, trial_id: str, flow_run_id: str) -> None: ...

    def trial_started(
        self, trial_id: str, trial_name: str, config: dict, max_failures: int, attempt: int
    ) -> None: ...

    def trial_result(self, trial_id: str, result: dict) -> None: ...

    def trial_failed(self, trial_id: str, error: str, will_retry: bool) -> None: ...

    def trial_finished(self, trial_id: str, status: TrialOutcome, message: str = "") -> None: ...

    def trial_paused(self, trial_id: str) -> None: ...

    def experiment_finished(self, status: ExperimentOutcome, summary_rows: List[dict]) -> None: ...

    def trial_logs(self, trial_id: str, records: List[LogLine]) -> None: ...

    def experiment_log(self, level: int, message: str) -> None: ...

    def watch_cancel(self, callback: CancelCallback) -> None: ...

    def run_context(self, trial_id: Optional[str] = None) -> Optional[RunContext]: ...

    def close(self, timeout: float) -> List[str]: ...


class NullRecorder:
    """Records nothing (``tunelib.prefect.create_recorder(enabled=False)``)."""

    def __init__(self) -> None:
        self.stats: Dict[str, Any] = {"writes": 0, "retries_503": 0, "seconds_busy": 0.0}
        self.api_url = None

    def experiment_started(self, name, parameters, tags):
        pass

    def trial_attached(self, trial_id, flow_run_id):
        pass

    def trial_started(self, trial_id, trial_name, config, max_failures, attempt):
        pass

    def trial_result(self, trial_id, result):
        pass

    def trial_failed(self, trial_id, error, will_retry):
        pass

    def trial_finished(self, trial_id, status, message=""):
        pass

    def trial_paused(self, trial_id):
        pass

    def experiment_finished(self, status, summary_rows):
        pass

    def trial_logs(self, trial_id, records):
        pass

    def experiment_log(self, level, message):
        pass

    def watch_cancel(self, callback):
        pass

    def run_context(self, trial_id=None):
        return None

    def close(self, timeout):
        return []


class QueueRecorder:
    """The caller-side half of a recorder: every method is one ``SimpleQueue.put``.

    Arguments are passed through untouched (the writer copies what it keeps). ``result``
    dicts must not be mutated by the caller after the call; the controller hands over a
    fresh dict per report, as Ray does.
    """

    def __init__(self) -> None:
        self._q: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._put = self._q.put
        self.stats: Dict[str, Any] = {"writes": 0, "retries_503": 0, "seconds_busy": 0.0}

    def experiment_started(self, name, parameters, tags):
        self._put(("experiment_started", time.time(), (name, parameters, list(tags))))

    def trial_attached(self, trial_id, flow_run_id):
        self._put(("trial_attached", time.time(), (trial_id, flow_run_id)))

    def trial_started(self, trial_id, trial_name, config, max_failures, attempt):
        self._put(
            ("trial_started", time.time(), (trial_id, trial_name, config, max_failures, attempt))
        )

    def trial_result(self, trial_id, result):
        self._put(("trial_result", time.time(), (trial_id, result)))

    def trial_failed(self, trial_id, error, will_retry):
        self._put(("trial_failed", time.time(), (trial_id, error, will_retry)))

    def trial_finished(self, trial_id, status, message=""):
        self._put(("trial_finished", time.time(), (trial_id, status, message)))

    def trial_paused(self, trial_id):
        self._put(("trial_paused", time.time(), (trial_id,)))

    def experiment_finished(self, status, summary_rows):
        self._put(("experiment_finished", time.time(), (status, summary_rows)))

    def trial_logs(self, trial_id, records):
        self._put(("trial_logs", time.time(), (trial_id, records)))

    def experiment_log(self, level, message):
        self._put(("experiment_log", time.time(), (level, message)))

    def watch_cancel(self, callback):  # pragma: no cover - overridden
        pass

    def run_context(self, trial_id=None):  # pragma: no cover - overridden
        return None

    def close(self, timeout):  # pragma: no cover - overridden
        return []

