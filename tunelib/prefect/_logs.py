"""Log lines on their way to a flow run's logs: a bounded buffer per run, and the JSON of
Prefect's ``POST /logs/`` (one request per batch of at most ``MAX_BATCH`` lines).

Pure (no Prefect, no I/O). A line keeps its own time (``LogLine.t``, when the trial wrote
it), not the time it was sent. A run's buffer holds at most ``MAX_BUFFERED`` lines: past
that the oldest are dropped and the next batch starts with a WARNING line saying how many.

Example::

    >>> buf = LogBuffer()
    >>> buf.add([LogLine(1.0, 20, "stdout", "epoch 1")])
    >>> buf.oldest_at(), len(buf)
    (1.0, 1)
    >>> [len(b) for b in buf.take()]
    [1]
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional

from tunelib.recording import LogLine

MAX_BATCH = 1_000          # lines per POST /logs/
MAX_BUFFERED = 20_000      # lines kept per run while its writes are behind
MAX_MESSAGE_CHARS = 20_000  # a longer line (a huge traceback) keeps its end

TRACEBACK_LOGGER = "tunelib.trial"   # a failed attempt's traceback, as an ERROR line
SUMMARY_LOGGER = "tunelib.experiment"


class LogBuffer:
    """One run's log lines not sent yet (bounded; see the module docstring)."""

    def __init__(self, limit: int = MAX_BUFFERED):
        self._lines: Deque[LogLine] = deque()
        self._limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, lines: Iterable[LogLine]) -> None:
        self._lines.extend(lines)
        over = len(self._lines) - self._limit
        for _ in range(max(0, over)):
            self._lines.popleft()
        self.dropped += max(0, over)

    def oldest_at(self) -> Optional[float]:
        return self._lines[0].t if self._lines else None

    def take(self) -> List[List[LogLine]]:
        """Every buffered line, in batches of at most ``MAX_BATCH`` (empties the buffer)."""
        lines = list(self._lines)
        self._lines.clear()
        if self.dropped and lines:
            lines.insert(0, LogLine(lines[0].t, logging.WARNING, "tunelib.recorder",
                                    f"{self.dropped} earlier lines were dropped: the "
                                    "Prefect server was too far behind"))
            self.dropped = 0
        return [lines[i:i + MAX_BATCH] for i in range(0, len(lines), MAX_BATCH)]


def iso_time(t: float) -> str:
    """``t`` (time.time()) as the UTC ISO 8601 timestamp Prefect's API takes."""
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).isoformat()


def log_bodies(lines: Iterable[LogLine], flow_run_id: str) -> List[Dict[str, object]]:
    """The JSON of ``POST /logs/`` (a list of ``LogCreate``) for ``lines`` on the flow run."""
    out = []
    for line in lines:
        message = str(line.message)
        if len(message) > MAX_MESSAGE_CHARS:
            message = "…" + message[-(MAX_MESSAGE_CHARS - 1):]
        out.append({"name": line.logger or "stdout", "level": int(line.level),
                    "message": message, "timestamp": iso_time(line.t),
                    "flow_run_id": flow_run_id})
    return out


def traceback_line(t: float, error: str, attempt_note: str = "") -> LogLine:
    """The ERROR line a failed attempt adds to its trial run's logs."""
    head = f"attempt failed{attempt_note}:\n" if attempt_note else ""
    return LogLine(t, logging.ERROR, TRACEBACK_LOGGER, head + (error or "failed").rstrip())


def summary_lines(t: float, rows: Iterable[object]) -> List[LogLine]:
    """The experiment's final summary as INFO lines: one per trial row
    (``trial_id  STATUS  key=value ...``)."""
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        head = f"{row.get('trial_id', '?')}  {row.get('status', '?')}"
        rest = "  ".join(f"{k}={_short(v)}" for k, v in row.items()
                         if k not in ("trial_id", "status"))
        out.append(LogLine(t, logging.INFO, SUMMARY_LOGGER, f"{head}  {rest}".rstrip()))
    return out


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:79] + "…"
