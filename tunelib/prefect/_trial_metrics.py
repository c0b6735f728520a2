"""What the recorder keeps of each trial's results for the experiment's artifacts (the
leaderboard, the trial's metric table, its checkpoint links, the learning curves).

Pure bookkeeping (no Prefect, no I/O), bounded whatever a trial reports:

* the results for the trial's table: all of them up to :data:`MAX_TABLE_ROWS`; past that,
  evenly spaced ones (every 2nd, 4th, ... result: :class:`EvenSample`), the latest always;
* the learning curve (``training_iteration``, metric) the same way, at most
  :data:`MAX_CURVE_POINTS` points;
* the latest result (the leaderboard's row), and the checkpoints it reported (name,
  iteration, metric) to link the latest and the best one.

Example::

    >>> goal = Objective("loss", "min")
    >>> tm = TrialMetrics("t1", "train_t1", index=0)
    >>> for i in range(1, 4):
    ...     tm.add_result({"training_iteration": i, "loss": 1 / i}, goal)
    >>> tm.iterations, tm.value(goal), len(tm.results.items())
    (3, 0.3333333333333333, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Generic, List, Optional, Tuple, TypeVar

from tunelib._layout import flatten_dict
from tunelib._lifecycle import TrialOutcome, TrialStatus

MAX_TABLE_ROWS = 1000      # rows of a trial's metric table (evenly spaced past that)
MAX_CURVE_POINTS = 200     # points of a trial's learning curve

T = TypeVar("T")


class EvenSample(Generic[T]):
    """At most ``cap`` items of a stream, evenly spaced: every ``stride``-th item is kept;
    when the cap is passed every other kept item is dropped and the stride doubles. The
    latest item is always part of :meth:`items`.

    >>> s = EvenSample(4)
    >>> for i in range(10):
    ...     s.add(i)
    >>> s.items(), s.stride, s.seen
    ([0, 4, 8, 9], 4, 10)
    """

    def __init__(self, cap: int):
        self.cap = max(2, int(cap))
        self.kept: List[T] = []
        self.stride = 1
        self.seen = 0
        self.latest: Optional[T] = None

    def add(self, item: T) -> None:
        if self.seen % self.stride == 0:
            self.kept.append(item)
            if len(self.kept) > self.cap:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.seen += 1
        self.latest = item

    def items(self) -> List[T]:
        """The kept items, oldest first, ending with the latest."""
        if self.seen and (not self.kept or self.kept[-1] is not self.latest):
            return [*self.kept, self.latest]
        return list(self.kept)

    def clear(self) -> None:
        """Drop the kept items (the count and the latest stay)."""
        self.kept = []


@dataclass(frozen=True)
class Objective:
    """The experiment's ``metric`` and ``mode`` (either may be unset)."""

    metric: Optional[str]
    mode: Optional[str]

    @property
    def ranks(self) -> bool:
        """Trials can be ranked: a metric and a mode of min or max."""
        return bool(self.metric) and self.mode in ("min", "max")

    def value(self, flat: Dict[str, Any]) -> Optional[float]:
        """The metric in a flattened result, when it is a finite number."""
        return finite_number(flat.get(self.metric)) if self.metric else None

    def better(self, a: Optional[float], b: Optional[float]) -> bool:
        """``a`` beats ``b`` (a missing value never beats anything)."""
        if a is None or not self.ranks:
            return False
        if b is None:
            return True
        return a < b if self.mode == "min" else a > b

    def sort_key(self, value: Optional[float]) -> Tuple[int, float]:
        """Best first, trials without a value last."""
        if value is None or not self.ranks:
            return (1, 0.0)
        return (0, value if self.mode == "min" else -value)


def finite_number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a finite real number (bools and NaN are not)."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, (int, float)):
        item = getattr(value, "item", None)  # numpy scalars
        if not callable(item):
            return None
        try:
            value = item()
        except (TypeError, ValueError):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class CheckpointSeen:
    """A checkpoint a result reported: its dir name, iteration and metric value."""

    name: str
    iteration: Optional[int]
    value: Optional[float]


class TrialMetrics:
    """One trial's results as the artifacts need them (see the module docstring)."""

    def __init__(self, trial_id: str, name: str, index: int):
        self.trial_id = trial_id
        self.name = name
        self.index = index                  # start order: ties and unranked trials
        self.status: str = TrialStatus.PENDING
        self.config: Dict[str, Any] = {}    # flattened
        self.results: EvenSample[dict] = EvenSample(MAX_TABLE_ROWS)
        self.curve: EvenSample[Tuple[float, float]] = EvenSample(MAX_CURVE_POINTS)
        self.checkpoints: Dict[str, CheckpointSeen] = {}
        self.latest_checkpoint: Optional[CheckpointSeen] = None
        self.written_at_seen = 0            # results.seen when its artifacts were written
        self._last_flat: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ events
    def start(self, config: Optional[dict]) -> None:
        """An attempt starts (a PBT exploit may have changed the config)."""
        self.status = TrialStatus.RUNNING
        if config is not None:
            self.config = flatten_dict(config) if isinstance(config, dict) else {}

    def add_result(self, result: dict, goal: Objective, curve_key: Optional[str] = None) -> None:
        """A reported result (kept as it is; flattened when a table is built)."""
        self.results.add(result)
        self._last_flat = None
        flat_needed = curve_key or goal.metric
        flat = self.last if flat_needed else {}
        iteration = result.get("training_iteration")
        if curve_key:
            y = finite_number(flat.get(curve_key))
            x = finite_number(iteration)
            if y is not None:
                self.curve.add((x if x is not None else float(self.results.seen), y))
        name = result.get("checkpoint_dir_name")
        if isinstance(name, str) and name:
            seen = CheckpointSeen(name, iteration if isinstance(iteration, int) else None,
                                  goal.value(flat) if goal.metric else None)
            self.checkpoints[name] = seen
            self.latest_checkpoint = seen

    def finish(self, outcome: TrialOutcome) -> None:
        self.status = TrialStatus.ERROR if outcome is TrialOutcome.ERROR else (
            TrialOutcome.STOPPED if outcome is TrialOutcome.STOPPED else TrialStatus.TERMINATED)

    @property
    def finished(self) -> bool:
        return self.status in (TrialStatus.TERMINATED, TrialStatus.ERROR, TrialOutcome.STOPPED)

    # ------------------------------------------------------------------ views
    @property
    def last(self) -> Dict[str, Any]:
        """The latest result, flattened (``config`` left out, as in progress.csv)."""
        if self._last_flat is None:
            latest = self.results.latest
            self._last_flat = flat_result(latest) if latest is not None else {}
        return self._last_flat

    @property
    def iterations(self) -> int:
        it = self.last.get("training_iteration")
        return it if isinstance(it, int) else self.results.seen

    def value(self, goal: Objective) -> Optional[float]:
        """The experiment's metric in the latest result."""
        return goal.value(self.last)

    def best_checkpoint(self, goal: Objective,
                        on_storage: Optional[List[str]] = None) -> Optional[CheckpointSeen]:
        """The checkpoint with the best metric (of those ``on_storage`` when given)."""
        best = None
        for seen in self.checkpoints.values():
            if on_storage is not None and seen.name not in on_storage:
                continue
            if best is None or goal.better(seen.value, best.value):
                best = seen
        return best if best is not None and best.value is not None else None

    @property
    def unwritten(self) -> bool:
        """Results came in since its artifacts were last written."""
        return self.results.seen != self.written_at_seen

    def written(self, seen: int) -> None:
        """Its artifacts were written with the first ``seen`` results: a finished trial's
        table rows are let go."""
        self.written_at_seen = seen
        if self.finished and seen == self.results.seen:
            self.results.clear()


def flat_result(result: dict) -> Dict[str, Any]:
    """A result as a row of progress.csv: flattened, without ``config``."""
    return flatten_dict({k: v for k, v in result.items() if k != "config"})
