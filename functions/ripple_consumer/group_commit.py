"""Group commit: the rows of concurrent requests written by one statement and one commit.

A consumer answers a delivery only after its own row is committed. Committing one transaction
per request costs three round trips (pool ping, INSERT, COMMIT) and a pooled connection per event,
which bounds a process to a few hundred events per second. Here each request thread queues its
row; a thread that finds fewer than `max_flushes` writes under way becomes a leader, takes up to
`max_rows` queued rows (its own among them, or earlier ones) and writes them with `write`, while
the rows of newer requests gather for the next write. The same idea as a Kafka producer's linger,
without waiting for anything but the write before: under light load a batch is one row.

Every request still gets its own outcome, from the write that held its row: `write` returns one
result or one exception per row (the event-store's writer falls back to one transaction per row
when a batch fails, so a bad row gets its own 422 and not the others).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Outcome = TypeVar("Outcome")


class _Waiter:
    __slots__ = ("done", "key", "outcome", "promoted", "row", "wake")

    def __init__(self, key: Any, row: Any, lock: threading.Lock) -> None:
        self.key = key
        self.row = row
        self.wake = threading.Condition(lock)
        self.promoted = False  # asked to lead one write
        self.done = False
        self.outcome: Any = None


class GroupCommit(Generic[Row, Outcome]):
    """`submit(key, row)` returns the outcome of the write that held the row, or raises its error.

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
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._active = 0  # writes under way or promised to a promoted waiter

    def submit(self, key: Any, row: Row) -> Outcome:
        waiter = _Waiter(key, row, self._lock)
        with self._lock:
            self._queue.append(waiter)
            if self._active < self._max_flushes:
                self._active += 1
                waiter.promoted = True
        while True:
            with self._lock:
                waiter.wake.wait_for(lambda: waiter.done or waiter.promoted)
                # A promoted request leads one write even if an earlier write already held its row.
                lead = waiter.promoted
                waiter.promoted = False
                if not lead and waiter.done:
                    break
            self._flush()
        if isinstance(waiter.outcome, BaseException):
            raise waiter.outcome
        return waiter.outcome

    def _take(self) -> list[_Waiter]:
        """The oldest queued rows that share the first one's key (called with the lock held)."""
        if not self._queue:
            return []
        key = self._queue[0].key
        batch: list[_Waiter] = []
        kept: list[_Waiter] = []
        while self._queue and len(batch) < self._max_rows:
            waiter = self._queue.popleft()
            (batch if waiter.key is key else kept).append(waiter)
        self._queue.extendleft(reversed(kept))
        return batch

    def _flush(self) -> None:
        """One write of the queue's head, then hand the next write to a queued request."""
        with self._lock:
            batch = self._take()
        outcomes: Sequence[Any] = []
        try:
            if batch:
                outcomes = self._write(batch[0].key, [waiter.row for waiter in batch])
        except BaseException as error:  # the whole batch failed the same way (e.g. no database)
            outcomes = [error] * len(batch)
        with self._lock:
            for waiter, outcome in zip(batch, outcomes, strict=True):
                waiter.outcome = outcome
                waiter.done = True
                waiter.wake.notify()
            self._active -= 1
            # Rows that queued during this write: a request among them leads the next one.
            for waiter in self._queue:
                if self._active >= self._max_flushes:
                    break
                if not waiter.promoted:
                    waiter.promoted = True
                    self._active += 1
                    waiter.wake.notify()
