"""Group commit: the rows of concurrent requests written by one statement and one commit.

A consumer answers a delivery only after its own row is committed. Committing one transaction
per request costs three round trips (pool ping, INSERT, COMMIT) and a pooled connection per event,
which bounds a process to a few hundred events per second. Here each request (a coroutine of the
function's event loop) queues its row and awaits it; while fewer than `max_flushes` writes are
under way a new one starts, takes up to `max_rows` queued rows and writes them with `write` on a
worker thread (SQLAlchemy and psycopg2 block), while the rows of newer requests gather for the
next write. The same idea as a Kafka producer's linger, without waiting for anything but the
write before: under light load a batch is one row.

Every request still gets its own outcome, from the write that held its row: `write` returns one
result or one exception per row (the event-store's writer falls back to one transaction per row
when a batch fails, so a bad row gets its own 422 and not the others).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Row, Outcome]):
    """`await submit(key, row)` gives the outcome of the write that held the row, or raises its error.

    `key` (e.g. the engine) separates rows that cannot share a write; `write(key, rows)` returns a
    result or an exception instance per row, in order, and may raise to fail the whole batch.
    """

    def __init__(
        self,
        write: Callable[[Any, Sequence[Row]], Sequence[Outcome | BaseException]],
        max_rows: int = 500,
        max_flushes: int = 2,
    ) -> None:
        self._write = write
        self._max_rows = max_rows
        self._max_flushes = max_flushes
        self._queue: deque[tuple[Any, Row, asyncio.Future[Any]]] = deque()
        self._active = 0  # writers under way
        self._writers: set[asyncio.Task[None]] = set()  # strong references while they run
        self._threads = ThreadPoolExecutor(max_flushes, thread_name_prefix="group-commit")

    async def submit(self, key: Any, row: Row) -> Outcome:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Any] = loop.create_future()
        self._queue.append((key, row, outcome))
        if self._active < self._max_flushes:
            self._active += 1
            writer = loop.create_task(self._drain())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await outcome

    def _take(self) -> list[tuple[Any, Row, asyncio.Future[Any]]]:
        """The oldest queued rows that share the first one's key."""
        key = self._queue[0][0]
        batch, kept = [], []
        while self._queue and len(batch) < self._max_rows:
            entry = self._queue.popleft()
            (batch if entry[0] is key else kept).append(entry)
        self._queue.extendleft(reversed(kept))
        return batch

    async def _drain(self) -> None:
        """Write the queue's head until the queue is empty (one of at most max_flushes writers)."""
        loop = asyncio.get_running_loop()
        try:
            await self._write_batches(loop)
        finally:
            # In the same step as the last look at the queue (no await between them), so a row
            # queued after it finds fewer writers and starts one.
            self._active -= 1

    async def _write_batches(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._queue:
            batch = self._take()
            outcomes: Sequence[Any]
            try:
                outcomes = await loop.run_in_executor(
                    self._threads, self._write, batch[0][0], [row for _, row, _ in batch]
                )
            except Exception as error:  # the whole batch failed the same way (e.g. no database)
                outcomes = [error] * len(batch)
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the request was cancelled (its client went away)
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
