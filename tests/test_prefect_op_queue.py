"""The recorder's ordered per-lane operation queue (tunelib.prefect._op_queue): no server,
no Prefect, milliseconds."""

from __future__ import annotations

import asyncio
import sys
from typing import List, Tuple

import pytest

from tunelib.prefect._op_queue import OpQueue


class Log:
    """Operations that append (lane, step) when they run, after an optional delay."""

    def __init__(self) -> None:
        self.done: List[Tuple[str, int]] = []
        self.errors: List[Tuple[str, str, str]] = []

    def on_error(self, lane, desc, exc) -> None:
        self.errors.append((lane, desc, str(exc)))

    async def op(self, lane: str, step: int, delay: float = 0.0, fail: bool = False) -> None:
        await asyncio.sleep(delay)
        if fail:
            raise RuntimeError(f"{lane} {step} broke")
        self.done.append((lane, step))


def run(coro_fn):
    return asyncio.run(coro_fn())


def test_operations_of_one_lane_run_in_schedule_order():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        # the first is the slowest: order must come from the queue, not from timing
        for step, delay in enumerate([0.03, 0.0, 0.01, 0.0]):
            ops.schedule("t1", f"step {step}", log.op("t1", step, delay))
        await ops.drain()

    run(main)
    assert log.done == [("t1", 0), ("t1", 1), ("t1", 2), ("t1", 3)]


def test_lanes_are_independent():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        ops.schedule("slow", "slow op", log.op("slow", 0, delay=0.05))
        ops.schedule("fast", "fast op", log.op("fast", 0))
        await ops.drain()

    run(main)
    assert log.done == [("fast", 0), ("slow", 0)]


def test_a_failing_operation_is_reported_and_does_not_block_the_next():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        ops.schedule("t1", "trial flow run", log.op("t1", 0, fail=True))
        ops.schedule("t1", "3 results", log.op("t1", 1))
        await ops.drain()
        return ops

    ops = run(main)
    assert log.errors == [("t1", "trial flow run", "t1 0 broke")]
    assert log.done == [("t1", 1)]
    assert ops.pending("t1") == [] and ops.idle()


def test_pending_lists_what_is_not_done_in_order():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        gate = asyncio.Event()

        async def blocked():
            await gate.wait()

        ops.schedule("t1", "trial flow run", blocked())
        ops.schedule("t1", "5 results (iterations 1-5)", log.op("t1", 1))
        ops.schedule("t2", "trial flow run", log.op("t2", 0))
        await asyncio.sleep(0.01)
        seen = (ops.pending("t1"), ops.pending("t2"), ops.in_flight("t1"), ops.idle())
        gate.set()
        await ops.drain()
        return seen, ops

    (t1, t2, in_flight, idle), ops = run(main)
    assert t1 == ["trial flow run", "5 results (iterations 1-5)"] and in_flight == 2
    assert t2 == [] and not idle
    assert ops.pending("t1") == [] and ops.in_flight("t1") == 0 and ops.idle()


def test_an_operation_waits_for_the_futures_it_is_scheduled_after():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        parent = ops.schedule("experiment", "experiment flow run",
                              log.op("experiment", 0, delay=0.03))
        ops.schedule("t1", "trial flow run", log.op("t1", 0), after=[parent, None])
        await ops.drain()

    run(main)
    assert log.done == [("experiment", 0), ("t1", 0)]


def test_a_failed_dependency_still_lets_the_dependent_run():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        parent = ops.schedule("experiment", "experiment flow run",
                              log.op("experiment", 0, fail=True))
        ops.schedule("t1", "trial flow run", log.op("t1", 0), after=[parent])
        await ops.drain()

    run(main)
    assert log.done == [("t1", 0)] and [e[0] for e in log.errors] == ["experiment"]


def test_drain_waits_for_everything_and_tails_name_each_lane():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        for lane in ("a", "b", "c"):
            for step in range(3):
                ops.schedule(lane, f"{lane}{step}", log.op(lane, step, delay=0.002 * step))
        assert len(ops.tails()) == 3 and len(ops.tails(exclude=["a"])) == 2
        assert not ops.idle()
        await ops.drain()
        return ops

    ops = run(main)
    assert ops.idle() and len(log.done) == 9
    for lane in ("a", "b", "c"):
        assert [s for name, s in log.done if name == lane] == [0, 1, 2]


def test_cancel_stops_outstanding_operations_without_running_them():
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        ops.schedule("t1", "first", log.op("t1", 0, delay=10))
        ops.schedule("t1", "second", log.op("t1", 1))
        await asyncio.sleep(0.01)
        ops.cancel()
        await asyncio.sleep(0.01)
        return ops

    ops = run(main)
    assert log.done == [] and log.errors == [] and ops.idle()


def test_needs_no_prefect(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect", None)  # any Prefect import now fails
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        ops.schedule("t1", "op", log.op("t1", 0))
        await ops.drain()

    run(main)
    assert log.done == [("t1", 0)]


@pytest.mark.parametrize("n", [200])
def test_many_operations_keep_per_lane_order(n):
    log = Log()

    async def main():
        ops = OpQueue(log.on_error)
        for step in range(n):
            for lane in ("x", "y"):
                ops.schedule(lane, f"{step}", log.op(lane, step))
        await ops.drain()

    run(main)
    for lane in ("x", "y"):
        assert [s for name, s in log.done if name == lane] == list(range(n))
