"""A trial attempt's output as log lines, captured in the worker process for the recorder.

While an attempt runs, ``capture_output()`` collects:

* what Python code writes to ``sys.stdout`` / ``sys.stderr``: the streams are wrapped by a
  tee that writes everything through to the stream it replaced, unchanged (the terminal, and
  ``log_to_file``'s fd-level copies keep working), and cuts the text into lines (stdout:
  level INFO, logger ``stdout``; stderr: WARNING, ``stderr``). Output written to the file
  descriptors directly (C code, child processes) is not captured: it is only in the
  terminal and in ``log_to_file``'s files;
* every ``logging`` record of any logger, whatever its handlers and ``propagate``: the
  record's level, logger name and formatted message with its traceback (``exc_text``) and
  ``stack_info``. ``logging.Logger.callHandlers`` is wrapped for the attempt.

One record, one line: while a record's handlers run (a StreamHandler printing it to
stderr), the tee of that thread does not capture, so a logged line is not captured a second
time as stderr text. Records of Prefect's run loggers (``get_run_logger()``: they carry a
``flow_run_id`` or ``task_run_id``) are left out: Prefect's own API handler sends them to
their run, with the task run they belong to.

Memory is bounded: a line is cut at ``MAX_LINE_CHARS``, and at most ``MAX_PENDING_LINES``
wait to be taken; further lines are counted and reported as one line when taken.

Example::

    capture = LogCapture(on_first_line=wake_flusher.set)
    with capture_output(capture):
        print("hello")                       # to the terminal, and captured
    capture.take()                           # [LogLine(t, 20, "stdout", "hello")]
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional

from tunelib.recording import LogLine

MAX_LINE_CHARS = 10_000
MAX_PENDING_LINES = 10_000
STDOUT_LOGGER = "stdout"
STDERR_LOGGER = "stderr"

# set while this thread's logging handlers run: their stream output is a record already
_emitting = threading.local()
_formatter = logging.Formatter()


class LogCapture:
    """The lines captured and not yet taken; safe to feed from any thread.

    ``on_first_line`` is called (outside the lock) when a line arrives while none waits:
    the worker's flusher wakes up then, and sleeps while nothing is printed.
    """

    def __init__(self, on_first_line: Optional[Callable[[], None]] = None):
        self._lines: List[LogLine] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._on_first_line = on_first_line

    def add(self, t: float, level: int, logger: str, message: str) -> None:
        if len(message) > MAX_LINE_CHARS:
            message = (f"{message[:MAX_LINE_CHARS]} "
                       f"[... {len(message) - MAX_LINE_CHARS} more characters cut by tunelib]")
        with self._lock:
            first = not self._lines
            if len(self._lines) >= MAX_PENDING_LINES:
                self._dropped += 1
                return
            self._lines.append(LogLine(t, level, logger, message))
        if first and self._on_first_line is not None:
            self._on_first_line()

    def take(self) -> Optional[List[LogLine]]:
        """The waiting lines, oldest first, or None when there are none (the hot path:
        one attribute test, no lock)."""
        if not self._lines:
            return None
        with self._lock:
            lines, self._lines = self._lines, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines.append(LogLine(time.time(), logging.WARNING, "tunelib",
                                 f"{dropped} lines of output were not recorded: more than "
                                 f"{MAX_PENDING_LINES} lines waited to be sent."))
        return lines


class _Tee:
    """Stands for ``sys.stdout`` / ``sys.stderr``: writes through to ``stream`` and adds
    each complete line to the capture (until ``close``)."""

    def __init__(self, stream, capture: LogCapture, level: int, logger: str):
        self._stream = stream
        self._capture: Optional[LogCapture] = capture
        self._level = level
        self._logger = logger
        self._partial = ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if self._capture is not None and not getattr(_emitting, "on", False):
            self._collect(text)
        return written

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def _collect(self, text: str) -> None:
        if "\n" not in text:
            self._partial += text
            if len(self._partial) > MAX_LINE_CHARS:  # a line without end: cut it here
                self._emit(self._partial)
                self._partial = ""
            return
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line:
            self._capture.add(time.time(), self._level, self._logger, line)

    def close_capture(self) -> None:
        """Stop capturing (a reference kept by user code writes through only); a last line
        without its newline is captured."""
        if self._capture is not None and self._partial:
            self._emit(self._partial)
        self._partial = ""
        self._capture = None

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):  # fileno, encoding, isatty, buffer...
        return getattr(self._stream, name)


def _record_line(record: logging.LogRecord) -> Optional[LogLine]:
    """The line a record is captured as; None for records Prefect sends to its runs."""
    if getattr(record, "flow_run_id", None) or getattr(record, "task_run_id", None):
        return None
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging prints its own error for it
        message = f"{record.msg!r} % {record.args!r}"
    if record.exc_info and not record.exc_text:
        record.exc_text = _formatter.formatException(record.exc_info)
    if record.exc_text:
        message = f"{message}\n{record.exc_text}"
    if record.stack_info:
        message = f"{message}\n{_formatter.formatStack(record.stack_info)}"
    return LogLine(record.created, record.levelno, record.name, message)


@contextlib.contextmanager
def capture_output(capture: LogCapture) -> Iterator[None]:
    """Capture this process's Python-level output and logging records into ``capture``
    for the duration (see the module docstring); everything is restored afterwards."""
    original_call_handlers = logging.Logger.callHandlers

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        line = _record_line(record)
        if line is not None:
            capture.add(*line)
        outer = getattr(_emitting, "on", False)  # a handler that logs while it emits
        _emitting.on = True
        try:
            original_call_handlers(logger, record)
        finally:
            _emitting.on = outer

    saved_out, saved_err = sys.stdout, sys.stderr
    tees = []
    if saved_out is not None:
        sys.stdout = _Tee(saved_out, capture, logging.INFO, STDOUT_LOGGER)
        tees.append(sys.stdout)
    if saved_err is not None:
        sys.stderr = _Tee(saved_err, capture, logging.WARNING, STDERR_LOGGER)
        tees.append(sys.stderr)
    logging.Logger.callHandlers = call_handlers
    try:
        yield
    finally:
        logging.Logger.callHandlers = original_call_handlers
        # a trainable that replaced the streams itself gets them back as they were before
        sys.stdout, sys.stderr = saved_out, saved_err
        for tee in tees:
            tee.close_capture()
