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
early; Ray calls this TERMINATED too, the message says who stopped it) or ``ERROR``
(failed for good). ``experiment_finished`` takes an ``ExperimentOutcome``.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Dict, List, Protocol, runtime_checkable

from tunelib._lifecycle import ExperimentOutcome, TrialOutcome

__all__ = ["Recorder", "NullRecorder", "QueueRecorder"]


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

    def close(self, timeout):  # pragma: no cover - overridden
        return []

