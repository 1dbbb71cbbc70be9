"""Hands requests to ready instances, at most `containerConcurrency` each, first come first served.

The activator's throttler and breaker (pkg/activator/net/throttler.go) and the queue-proxy's
breaker in one: a request takes a slot on the least busy ready instance; when none has a free
slot (or none is ready: scaled to zero, cold start) it waits in one FIFO queue until a slot
frees, an instance becomes ready, or its deadline passes. Slots are handed over directly to the
oldest waiter, so a request that waited is never overtaken by one that just arrived.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Slotted(Protocol):
    active: int


class Throttler:
    def __init__(self, container_concurrency: int) -> None:
        self.capacity = container_concurrency  # 0 = unlimited
        self.ready: list[Slotted] = []
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for waiter in self.waiters if not waiter.done())

    def _pick(self) -> Slotted | None:
        best = None
        for instance in self.ready:
            if self.capacity and instance.active >= self.capacity:
                continue
            if best is None or instance.active < best.active:
                best = instance
        return best

    async def acquire(self, deadline: float) -> Slotted | None:
        """A slot on a ready instance, or None when the deadline (loop time) passes first."""
        if not self.waiters:
            instance = self._pick()
            if instance is not None:
                instance.active += 1
                return instance
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiters.append(waiter)
        # A timer resolves the waiter with None: no cancellation race can lose a handed slot.
        timer = loop.call_at(deadline, lambda: waiter.done() or waiter.set_result(None))
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self.release(waiter.result())
            raise
        finally:
            timer.cancel()

    def release(self, instance: Slotted) -> None:
        instance.active -= 1
        self.dispatch()

    def dispatch(self) -> None:
        """Give free slots to the oldest waiters."""
        while self.waiters:
            if self.waiters[0].done():
                self.waiters.popleft()
                continue
            instance = self._pick()
            if instance is None:
                return
            instance.active += 1
            self.waiters.popleft().set_result(instance)

    def add(self, instance: Slotted) -> None:
        self.ready.append(instance)
        self.dispatch()

    def remove(self, instance: Slotted) -> None:
        if instance in self.ready:
            self.ready.remove(instance)
