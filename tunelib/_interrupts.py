"""Ctrl-C, SIGTERM and SIGUSR1 while an experiment runs: stop it so that it can be resumed.

Ray's rules (``ray.tune.tune._setup_signal_catching``), kept: the first SIGINT (or any
SIGUSR1) asks the experiment to end; the controller stops its trials where they are, saves
the experiment state with them unfinished (resumable from their latest checkpoints), a
one-line hint says how to resume, and ``fit()`` / ``tune.run()`` return the results so far.
SIGINT's previous handler is back as soon as the first one arrives, so a second Ctrl-C
raises ``KeyboardInterrupt`` at once (what was saved stays resumable).
``TUNE_DISABLE_SIGINT_HANDLER=1`` leaves SIGINT alone, as in Ray.

Where tunelib goes further: Ray does not catch SIGTERM (its driver exits with
``SystemExit(1)`` without saving). Here a SIGTERM (a batch scheduler's stop) stops the
experiment as the first Ctrl-C does; then, with the state saved and the Prefect records
drained, the process ends by it as it would have (``pass_on``); a second SIGTERM ends it at
once. Where a handler of SIGTERM is already set (Prefect's, in a flow run: Cancel in the UI
makes Prefect's runner send SIGTERM), it is left in place: the exception it raises stops the
controller, which saves the unfinished trials just as resumably, and reaches the caller
(Prefect then records the cancellation as its own).

Signal handlers can only be set in the main thread; elsewhere nothing is caught (as Ray).

Example::

    stop_signals = StopSignals(controller.request_stop)
    with stop_signals:
        controller.run()
    stop_signals.pass_on()
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable, Dict, Optional

logger = logging.getLogger("tunelib")

DISABLE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class StopSignals:
    """Catches the stop signals for the duration of a ``with`` block (see module docstring).

    ``on_stop(reason)`` is called, from the signal handler, for the first one; it must only
    set a flag. ``received`` is that signal (None while none came).
    """

    def __init__(self, on_stop: Callable[[str], None]):
        self._on_stop = on_stop
        self._previous: Dict[signal.Signals, object] = {}
        self.received: Optional[signal.Signals] = None

    # ------------------------------------------------------------------ install / restore
    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        wanted = []
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # else: see module docstring
            wanted.append(signal.SIGTERM)
        if os.environ.get(DISABLE_SIGINT_ENV, "0").strip() in ("", "0"):
            wanted.append(signal.SIGINT)
        if hasattr(signal, "SIGUSR1"):
            wanted.append(signal.SIGUSR1)
        for sig in wanted:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig in list(self._previous):
            self._restore(sig)

    def _restore(self, sig: signal.Signals) -> None:
        if sig in self._previous:
            previous = self._previous.pop(sig)
            # None: a handler set outside Python, which cannot be put back
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)

    # ------------------------------------------------------------------ the handler
    def _handle(self, signum: int, frame) -> None:
        sig = signal.Signals(signum)
        if self.received is not None:
            if sig == signal.SIGTERM:  # the second: what it would have done without us
                self._deliver(sig)
            return
        self.received = sig
        if sig == signal.SIGINT:
            self._restore(sig)  # a second Ctrl-C raises KeyboardInterrupt at once
        again = "Press Ctrl-C again" if sig != signal.SIGTERM else "Send SIGTERM again"
        logger.warning(
            "Stop signal received (%s): ending the experiment and saving its state, which "
            "can be resumed. %s (or send SIGKILL) to skip this.", sig.name, again)
        self._on_stop(sig.name)

    def pass_on(self) -> None:
        """After a SIGTERM, once the experiment is saved (outside the ``with`` block): end
        the process by it, as its default action does."""
        if self.received == signal.SIGTERM:
            self._deliver(signal.SIGTERM)

    def _deliver(self, sig: signal.Signals) -> None:
        self._restore(sig)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        os.kill(os.getpid(), sig)
