"""The throttler: containerConcurrency per instance, FIFO hand-over, deadlines."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from knative_standins.serving.throttler import Throttler


@dataclass(eq=False)
class Fake:
    active: int = 0


def test_capacity_queueing_and_fifo_handover() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        throttler = Throttler(container_concurrency=2)
        first = Fake()
        throttler.add(first)
        held = [await throttler.acquire(loop.time() + 5) for _ in range(2)]
        assert held == [first, first] and first.active == 2
        waiting = [loop.create_task(throttler.acquire(loop.time() + 5)) for _ in range(3)]
        await asyncio.sleep(0)
        assert throttler.queued == 3
        second = Fake()
        throttler.add(second)  # a new instance takes the two oldest waiters
        await asyncio.sleep(0)
        assert [task.done() for task in waiting] == [True, True, False]
        throttler.release(first)
        await asyncio.sleep(0)
        assert waiting[2].result() is first
        assert first.active == 2 and second.active == 2

    asyncio.run(scenario())


def test_deadline_answers_none_and_leaves_no_slot_taken() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        throttler = Throttler(container_concurrency=1)
        assert await throttler.acquire(loop.time() + 0.05) is None
        instance = Fake()
        throttler.add(instance)
        assert instance.active == 0

    asyncio.run(scenario())


def test_unlimited_concurrency_spreads_by_least_busy() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        throttler = Throttler(container_concurrency=0)
        a, b = Fake(), Fake()
        throttler.add(a)
        throttler.add(b)
        picks = [await throttler.acquire(loop.time() + 1) for _ in range(6)]
        assert (a.active, b.active, picks.count(a)) == (3, 3, 3)

    asyncio.run(scenario())
