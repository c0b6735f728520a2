"""When the recorder writes which artifact: the experiment's rewritten ones (leaderboard,
progress, curves) coalesced behind throttles, a trial's own ones once it ends (or stays
paused), and what they are built from. Pure (no Prefect, no I/O): the recorder's writer
loop asks it what is due and builds the bodies when a write starts.

Rules (see :class:`Throttle`):

* the leaderboard is marked by every trial start, pause, failure and end (urgent) and by
  new results (not urgent); it is rewritten - a new version under its key - at most every
  max(2 s, 1 % of the experiment's age, 25 x its last write's duration), at most every
  30 s for new results alone, and once more at the end;
* the progress artifact changes with trial starts and ends: created once, then updated in
  place at most every 2 s, and at the end;
* the learning curves change with results: updated in place at most every 30 s (or 2 % of
  the experiment's age), and at the end;
* these wait until the writer has caught up with the runs' own records (at most
  :data:`CAUGHT_UP_OPS` writes outstanding) - or for ten intervals, when it never does;
* a trial's metric table and checkpoint links are written when it ends, and when it has
  been paused for :data:`PAUSED_WRITE_DELAY_S` (a PBT pause-and-resume writes nothing).

Example::

    >>> book = ArtifactBook()
    >>> book.experiment_started("exp", {"metric": "loss", "mode": "min"}, now=0.0)
    >>> book.trial_started("t1", "train_t1", {"lr": 0.1}, now=0.5)
    >>> book.due(now=1.0, caught_up=True), book.due(now=2.5, caught_up=True)
    ([], [<Rewritten.LEADERBOARD: 'leaderboard'>, <Rewritten.PROGRESS: 'progress'>])
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Container, Dict, List, Optional

from tunelib._lifecycle import TrialOutcome, TrialStatus
from tunelib.prefect._artifact_content import ExperimentInfo, curve_metric
from tunelib.prefect._trial_metrics import Objective, TrialMetrics

CAUGHT_UP_OPS = 2            # outstanding writes at most, for the writer to count as caught up
PAUSED_WRITE_DELAY_S = 10.0  # a trial paused this long gets its table written
_WAIT_INTERVALS = 10         # a writer that never catches up still rewrites this rarely


class Rewritten(StrEnum):
    """The experiment's artifacts that are rewritten as it goes."""

    LEADERBOARD = "leaderboard"
    PROGRESS = "progress"
    CURVES = "curves"


@dataclass
class Throttle:
    """How often an artifact rewritten during the experiment may be written.

    ``mark(urgent)`` says it changed; it is due when marked and the interval since its last
    write passed: max(``min_interval`` - ``stale_interval`` when no urgent change came -,
    ``age_fraction`` x the experiment's age, ``cost_factor`` x the last write's seconds),
    and the writer has caught up (or waited :data:`_WAIT_INTERVALS` intervals).
    """

    min_interval: float
    stale_interval: float
    age_fraction: float = 0.0
    cost_factor: float = 25.0
    last_at: float = 0.0
    last_cost: float = 0.0
    dirty: bool = False
    urgent: bool = False

    def mark(self, urgent: bool) -> None:
        self.dirty = True
        self.urgent = self.urgent or urgent

    def interval(self, age: float) -> float:
        base = self.min_interval if self.urgent else self.stale_interval
        return max(base, self.age_fraction * age, self.cost_factor * self.last_cost)

    def due(self, now: float, age: float, caught_up: bool) -> bool:
        if not self.dirty:
            return False
        waited = now - self.last_at
        interval = self.interval(age)
        return waited >= interval and (caught_up or waited >= _WAIT_INTERVALS * interval)

    def taken(self, now: float) -> None:
        """Its content is being built now: later changes mark it again."""
        self.dirty = self.urgent = False
        self.last_at = now


def _throttles(now: float) -> Dict[Rewritten, Throttle]:
    return {
        Rewritten.LEADERBOARD: Throttle(2.0, 30.0, age_fraction=0.01, last_at=now),
        Rewritten.PROGRESS: Throttle(2.0, 2.0, last_at=now),
        Rewritten.CURVES: Throttle(30.0, 30.0, age_fraction=0.02, last_at=now),
    }


class ArtifactBook:
    """The artifacts' state for one experiment (see the module docstring)."""

    def __init__(self) -> None:
        self.info = ExperimentInfo("experiment", Objective(None, None))
        self.trials: Dict[str, TrialMetrics] = {}
        self.curve_key: Optional[str] = None
        self.started_at = 0.0
        self.throttles = _throttles(0.0)
        self._pause_due: Dict[str, float] = {}
        self._write_pending: set = set()

    # ------------------------------------------------------------------ events
    def experiment_started(self, name: str, parameters: Dict[str, Any], now: float) -> None:
        self.info = ExperimentInfo.from_parameters(name, parameters or {})
        self.started_at = now
        self.throttles = _throttles(now)

    def trial_started(self, trial_id: str, name: str, config: Optional[dict],
                      now: float) -> None:
        tm = self._trial(trial_id, name)
        tm.name = name
        tm.start(config)
        self._pause_due.pop(trial_id, None)
        self._mark(urgent=True, progress=True)

    def trial_result(self, trial_id: str, result: dict) -> None:
        tm = self._trial(trial_id)
        if self.curve_key is None:
            self.curve_key = curve_metric(self.info, result)
        tm.add_result(result, self.info.goal, self.curve_key)
        self.throttles[Rewritten.LEADERBOARD].mark(urgent=False)
        self.throttles[Rewritten.CURVES].mark(urgent=False)

    def trial_paused(self, trial_id: str, now: float) -> None:
        self._trial(trial_id).status = TrialStatus.PAUSED
        self._pause_due[trial_id] = now + PAUSED_WRITE_DELAY_S
        self._mark(urgent=True, progress=True)

    def trial_failed(self, trial_id: str, will_retry: bool) -> None:
        self._trial(trial_id).status = TrialStatus.PENDING if will_retry else TrialStatus.ERROR
        self._mark(urgent=True, progress=not will_retry)

    def trial_finished(self, trial_id: str, outcome: TrialOutcome) -> None:
        self._trial(trial_id).finish(outcome)
        self._pause_due.pop(trial_id, None)
        self._mark(urgent=True, progress=True)

    def summary_rows(self, rows: List[dict]) -> None:
        """The controller's final rows: trials this recorder never heard of (finished in an
        earlier run of a resumed experiment) join the leaderboard with what they say."""
        by_name = {tm.name for tm in self.trials.values()}
        metric = self.info.goal.metric
        for row in rows:
            name = row.get("trial") if isinstance(row, dict) else None
            if not isinstance(name, str) or name in by_name:
                continue
            tm = self._trial(f"summary:{name}", name)
            tm.status = str(row.get("status", TrialStatus.TERMINATED))
            result = {"training_iteration": row.get("iterations", 0)}
            if metric and metric in row:
                result[metric] = row[metric]
            tm.add_result(result, self.info.goal)
            tm.written_at_seen = tm.results.seen  # nothing of its own to write

    # ------------------------------------------------------------------ what is due
    def due(self, now: float, caught_up: bool) -> List[Rewritten]:
        """The rewritten artifacts to write now."""
        if not self.trials:
            return []
        age = now - self.started_at
        return [kind for kind, throttle in self.throttles.items()
                if throttle.due(now, age, caught_up)]

    def taken(self, kind: Rewritten, now: float) -> None:
        self.throttles[kind].taken(now)

    def wrote(self, kind: Rewritten, seconds: float) -> None:
        self.throttles[kind].last_cost = seconds

    def trials_due(self, now: float) -> List[str]:
        """Paused trials whose table is due (each returned once per pause)."""
        due = [tid for tid, at in self._pause_due.items() if now >= at]
        for tid in due:
            del self._pause_due[tid]
        return [tid for tid in due if self.claim_trial_write(tid)]

    def claim_trial_write(self, trial_id: str) -> bool:
        """True when the trial's artifacts are to be written (they changed since the last
        write and none is scheduled yet); the caller schedules it."""
        tm = self.trials.get(trial_id)
        if tm is None or not tm.unwritten or trial_id in self._write_pending:
            return False
        self._write_pending.add(trial_id)
        return True

    def trial_written(self, trial_id: str, seen: int) -> None:
        """The trial's artifacts were written (or failed to be) with its first ``seen``
        results; it can be claimed again when more come."""
        self._write_pending.discard(trial_id)
        self.trials[trial_id].written(seen)

    def unwritten_trials(self, skip: Container[str] = ()) -> List[str]:
        """Trials whose artifacts are not written yet (claimed by this call), but ``skip``."""
        return [tid for tid in self.trials if tid not in skip and self.claim_trial_write(tid)]

    # ------------------------------------------------------------------ internals
    def _trial(self, trial_id: str, name: Optional[str] = None) -> TrialMetrics:
        tm = self.trials.get(trial_id)
        if tm is None:
            tm = self.trials[trial_id] = TrialMetrics(trial_id, name or trial_id,
                                                      index=len(self.trials))
        return tm

    def _mark(self, urgent: bool, progress: bool) -> None:
        self.throttles[Rewritten.LEADERBOARD].mark(urgent)
        if progress:
            self.throttles[Rewritten.PROGRESS].mark(urgent)
