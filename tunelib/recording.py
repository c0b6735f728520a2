"""Recording an experiment in Prefect, as seen by the engine.

The controller calls a :class:`Recorder` from its hot loop (thousands of times a second):
every method only enqueues ``(kind, time.time(), args)`` on a ``queue.SimpleQueue`` and
returns. A single writer thread in the driver (``flows.recorder.PrefectRecorder``) turns
the events into Prefect writes through the REST API. This module imports no Prefect.

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

__all__ = ["Recorder", "NullRecorder", "QueueRecorder", "create_recorder"]


@runtime_checkable
class Recorder(Protocol):
    stats: Dict[str, Any]

    def experiment_started(self, name: str, parameters: dict, tags: List[str]) -> None: ...

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
    """Records nothing (``create_recorder(enabled=False)``, or Prefect unavailable)."""

    def __init__(self) -> None:
        self.stats: Dict[str, Any] = {"writes": 0, "retries_503": 0, "seconds_busy": 0.0}
        self.api_url = None

    def experiment_started(self, name, parameters, tags):
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


def create_recorder(enabled: bool = True, **kwargs: Any) -> Recorder:
    """A recorder writing to Prefect (``flows.recorder.PrefectRecorder``), or a NullRecorder.

    Returns at once: the Prefect import, the embedded server's start and every write happen
    on the recorder's own thread. ``kwargs`` go to ``PrefectRecorder`` (``window``,
    ``max_in_flight``, ``api_url``).
    """
    if not enabled:
        return NullRecorder()
    from flows.recorder import PrefectRecorder  # lazy: keeps Prefect off import paths

    return PrefectRecorder(**kwargs)
