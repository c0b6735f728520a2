"""Ordered asynchronous operations per lane: the recorder's writes of one trial (or of the
experiment) run one after another in the order they were scheduled, while different lanes
run concurrently.

A failed operation is reported (``on_error``) and counted as missing; it never blocks the
next one of its lane. ``pending()`` says what is scheduled and not yet done, in words, for
the list of what was not recorded when ``close()`` runs out of time.

Example (inside a running event loop)::

    ops = OpQueue(on_error=lambda lane, desc, exc: print(lane, desc, exc))
    ops.schedule("t1", "trial flow run", create_run())
    ops.schedule("t1", "3 results", create_task_run())   # runs after the first one
    await ops.drain()
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Dict, Hashable, Iterable, List, Optional, Set

ErrorHandler = Callable[[Hashable, str, Exception], None]


class OpQueue:
    """Per-lane FIFO of coroutines on the running event loop (see the module docstring)."""

    def __init__(self, on_error: ErrorHandler):
        self._on_error = on_error
        self._seq = 0
        self._tails: Dict[Hashable, asyncio.Task] = {}
        self._in_flight: Dict[Hashable, int] = {}
        self._pending: Dict[Hashable, Dict[int, str]] = {}
        self._live: Set[asyncio.Task] = set()

    def schedule(self, lane: Hashable, desc: str, coro: Awaitable[None],
                 after: Iterable[Optional[asyncio.Future]] = ()) -> asyncio.Task:
        """Run ``coro`` once the lane's previous operation and every future in ``after``
        are done (however they ended); returns its task. ``desc`` names what it records."""
        self._seq += 1
        op_id = self._seq
        self._pending.setdefault(lane, {})[op_id] = desc
        self._in_flight[lane] = self._in_flight.get(lane, 0) + 1
        waits = [f for f in (self._tails.get(lane), *after) if f is not None]
        task = asyncio.ensure_future(self._run(lane, op_id, desc, waits, coro))
        self._tails[lane] = task
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        return task

    async def _run(self, lane: Hashable, op_id: int, desc: str, waits: List[asyncio.Future],
                   coro: Awaitable[None]) -> None:
        try:
            for future in waits:
                await asyncio.wait([future])
            await coro
        except asyncio.CancelledError:
            close = getattr(coro, "close", None)
            if close is not None:
                close()  # never started when cancelled while waiting its turn
            raise
        except Exception as exc:
            self._on_error(lane, desc, exc)
        finally:
            self._pending[lane].pop(op_id, None)
            self._in_flight[lane] -= 1

    # ------------------------------------------------------------------ inspection
    def in_flight(self, lane: Hashable) -> int:
        """Operations of ``lane`` scheduled and not finished."""
        return self._in_flight.get(lane, 0)

    def idle(self) -> bool:
        """Nothing scheduled is unfinished."""
        return not self._live

    def outstanding(self) -> int:
        """Operations scheduled and not finished, all lanes together."""
        return len(self._live)

    def pending(self, lane: Hashable) -> List[str]:
        """What the lane's unfinished operations record, in schedule order."""
        ops = self._pending.get(lane, {})
        return [ops[k] for k in sorted(ops)]

    def lanes(self) -> List[Hashable]:
        return list(self._tails)

    def tails(self, exclude: Iterable[Hashable] = ()) -> List[asyncio.Task]:
        """The last scheduled operation of every lane (but ``exclude``'s), done or not."""
        skip = set(exclude)
        return [task for lane, task in self._tails.items() if lane not in skip]

    # ------------------------------------------------------------------ ending
    async def drain(self) -> None:
        """Until every operation scheduled so far (and any they schedule) has finished."""
        while self._live:
            await asyncio.wait(list(self._live))

    def cancel(self) -> None:
        """Cancel every outstanding operation."""
        for task in list(self._live):
            task.cancel()
