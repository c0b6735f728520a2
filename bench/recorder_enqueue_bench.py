"""Caller-side cost of the Prefect recorder: µs per call of each ``QueueRecorder`` method.

Run: ``python bench/recorder_enqueue_bench.py [--calls 20000] [--repeats 5]``

The controller calls the recorder from its hot loop, so every method must only enqueue
(``tunelib.recording``'s contract; ``tests/test_recording.py`` checks the behaviour, this
script the speed). No writer thread drains the queue here: the numbers are the put alone.
Prints, per method, the best of ``--repeats`` runs of ``--calls`` calls, in µs per call; a
few µs is expected (the old test assertion allowed 50 µs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tunelib.recording import QueueRecorder  # noqa: E402

RESULT = {"training_iteration": 1, "loss": 0.5, "accuracy": 0.9}
CALLS: Dict[str, Callable[[QueueRecorder], None]] = {
    "experiment_started": lambda r: r.experiment_started("exp", {"num_samples": 8}, ["exp"]),
    "trial_attached": lambda r: r.trial_attached("t", "00000000-0000-0000-0000-000000000000"),
    "trial_started": lambda r: r.trial_started("t", "fn_t", {"lr": 0.1}, 2, 0),
    "trial_result": lambda r: r.trial_result("t", RESULT),
    "trial_failed": lambda r: r.trial_failed("t", "ValueError: boom", True),
    "trial_finished": lambda r: r.trial_finished("t", "TERMINATED"),
    "trial_paused": lambda r: r.trial_paused("t"),
    "experiment_finished": lambda r: r.experiment_finished("COMPLETED", []),
}


def per_call_us(call: Callable[[QueueRecorder], None], calls: int, repeats: int) -> float:
    """Best of ``repeats`` timings of ``calls`` calls on a fresh recorder, in µs per call."""
    best = float("inf")
    for _ in range(repeats):
        recorder = QueueRecorder()
        t0 = time.perf_counter()
        for _ in range(calls):
            call(recorder)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"QueueRecorder, best of {args.repeats} x {args.calls} calls:")
    for name, call in CALLS.items():
        print(f"  {name:<20} {per_call_us(call, args.calls, args.repeats):6.2f} µs/call")


if __name__ == "__main__":
    main()
