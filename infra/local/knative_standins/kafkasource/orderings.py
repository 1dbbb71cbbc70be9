"""The two orderings of a KafkaSource, one class each, as upstream has one verticle each
(eventing-kafka-broker's OrderedConsumerVerticle and UnorderedConsumerVerticle).

The dispatcher (dispatcher.py) polls, keeps the in-flight bound and commits; it hands each
partition's newly received records to its ordering, which decides when each is delivered:

- Unordered: every record at once.
- Ordered: one record at a time per partition, in offset order (per-key order, since a key maps
  to one partition); partitions proceed in parallel.

Both call `deliver(record)` (True once the sink or the dead-letter sink took it, False when the
dispatcher is stopping) and report each delivered record with `done(tp, state, offset)`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from kafka import TopicPartition

from .convert import Record
from .manifest import ORDERED
from .offsets import OffsetTracker, PartitionOffsets

Deliver = Callable[[Record], Awaitable[bool]]
Done = Callable[[TopicPartition, PartitionOffsets, int], None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Unordered:
    def __init__(self, deliver: Deliver, done: Done, spawn: Spawn) -> None:
        self.deliver, self.done, self.spawn = deliver, done, spawn

    def accept(self, tp: TopicPartition, state: PartitionOffsets, records: Iterable[Record]) -> None:
        for record in records:
            self.spawn(self._one(tp, state, record))

    def keep_only(self, partitions: set[TopicPartition]) -> None:
        """Nothing waits here: records of a revoked partition finish, and are not committed."""

    async def _one(self, tp: TopicPartition, state: PartitionOffsets, record: Record) -> None:
        if await self.deliver(record):
            self.done(tp, state, record.offset)


class Ordered:
    def __init__(
        self, deliver: Deliver, done: Done, spawn: Spawn, offsets: OffsetTracker, stopping: asyncio.Event
    ) -> None:
        self.deliver, self.done, self.spawn = deliver, done, spawn
        self.offsets, self.stopping = offsets, stopping
        self.queues: dict[TopicPartition, deque[Record]] = {}  # records waiting for their turn
        self.running: set[TopicPartition] = set()  # partitions with a record on its way

    def accept(self, tp: TopicPartition, state: PartitionOffsets, records: Iterable[Record]) -> None:
        queue = self.queues.setdefault(tp, deque())
        queue.extend(records)
        if tp not in self.running and queue:
            self.running.add(tp)
            self.spawn(self._in_order(tp, state))

    def keep_only(self, partitions: set[TopicPartition]) -> None:
        """Drop what waits for partitions no longer assigned (they are redelivered to the new owner)."""
        for tp in [tp for tp in self.queues if tp not in partitions]:
            # Emptied, not only dropped: the partition's running task holds the same deque and
            # must start nothing more (the record it has on the wire finishes on its own).
            self.queues.pop(tp).clear()

    async def _in_order(self, tp: TopicPartition, state: PartitionOffsets) -> None:
        try:
            queue = self.queues.get(tp)
            while queue and self.offsets.is_current(tp, state) and not self.stopping.is_set():
                record = queue[0]
                if not await self.deliver(record):
                    return  # stopped: the rest stays undone, redelivered after the restart
                if queue and queue[0] is record:  # else emptied by a revoke meanwhile
                    queue.popleft()
                self.done(tp, state, record.offset)
        finally:
            self.running.discard(tp)


def ordering_of(
    ordering: str, deliver: Deliver, done: Done, spawn: Spawn, offsets: OffsetTracker, stopping: asyncio.Event
) -> Ordered | Unordered:
    """The manifest's spec.ordering as its class."""
    if ordering == ORDERED:
        return Ordered(deliver, done, spawn, offsets, stopping)
    return Unordered(deliver, done, spawn)
