"""Which offsets of a partition may be committed: only those whose every earlier offset is done.

Records complete out of order (unordered mode delivers many at once; a retried one finishes late),
but a committed offset tells a restarted dispatcher "everything before this was handled". So an
offset is committable once it and every offset received before it were acknowledged by the sink
or the dead-letter sink: at least once, never lost. This is eventing-kafka-broker's
UnorderedOffsetManager / OffsetTracker job, on its own.

The tracker is touched by one thread (the dispatcher's event loop), so it takes no locks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable


class PartitionOffsets:
    """Received and done offsets of one partition, and the next offset to commit."""

    __slots__ = ("_done", "_next_commit", "_pending", "committed", "last_received")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # received offsets not yet folded into _next_commit
        self._done: set[int] = set()
        self._next_commit: int | None = None  # one past the last offset of the done prefix
        self.committed: int | None = None  # what Kafka has for this partition, as far as we know
        self.last_received: int | None = None

    def receive(self, offset: int) -> bool:
        """Note a fetched record; False if it was received before (a re-fetch: already handled)."""
        if self.last_received is not None and offset <= self.last_received:
            return False
        self.last_received = offset
        self._pending.append(offset)
        return True

    def complete(self, offset: int) -> None:
        """The sink or the dead-letter sink acknowledged this offset."""
        pending = self._pending
        if pending and pending[0] == offset:
            # The usual case in order: fold it and any done successors into the prefix now.
            pending.popleft()
            self._next_commit = offset + 1
            done = self._done
            while pending and pending[0] in done:
                first = pending.popleft()
                done.discard(first)
                self._next_commit = first + 1
        else:
            self._done.add(offset)

    @property
    def outstanding(self) -> int:
        """Received and not yet done."""
        return len(self._pending) - len(self._done)

    def to_commit(self) -> int | None:
        """The offset to commit now (one past the done prefix), or None if nothing new is done."""
        if self._next_commit is not None and self._next_commit != self.committed:
            return self._next_commit
        return None


class OffsetTracker:
    """PartitionOffsets of every assigned partition, and how many records are outstanding in all."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, PartitionOffsets] = {}
        self.outstanding = 0

    def assign(self, partitions: Iterable[Hashable]) -> None:
        """Keep the state of partitions still assigned, start new ones, forget revoked ones."""
        wanted = set(partitions)
        for key in list(self._partitions):
            if key not in wanted:
                self.outstanding -= self._partitions.pop(key).outstanding
        for key in wanted:
            self._partitions.setdefault(key, PartitionOffsets())

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop revoked partitions: what they had outstanding no longer counts, and completions
        that arrive for them later are ignored (`is_current`)."""
        for key in partitions:
            state = self._partitions.pop(key, None)
            if state is not None:
                self.outstanding -= state.outstanding

    def get(self, partition: Hashable) -> PartitionOffsets:
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = PartitionOffsets()
        return state

    def is_current(self, partition: Hashable, state: PartitionOffsets) -> bool:
        """False once the partition was revoked (or reassigned) since `state` was handed out."""
        return self._partitions.get(partition) is state

    def receive(self, partition: Hashable, state: PartitionOffsets, offset: int) -> bool:
        if not state.receive(offset):
            return False
        self.outstanding += 1
        return True

    def complete(self, partition: Hashable, state: PartitionOffsets, offset: int) -> None:
        if self.is_current(partition, state):  # a revoked partition's new owner redelivers
            state.complete(offset)
            self.outstanding -= 1

    def to_commit(self) -> dict[Hashable, int]:
        """Per partition, the offset to commit now; partitions with nothing new are left out."""
        offsets = {}
        for key, state in self._partitions.items():
            offset = state.to_commit()
            if offset is not None:
                offsets[key] = offset
        return offsets

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Kafka accepted these commits."""
        for key, offset in offsets.items():
            state = self._partitions.get(key)
            if state is not None:
                state.committed = offset

    def committed_offsets(self) -> dict[Hashable, int | None]:
        return {key: state.committed for key, state in self._partitions.items()}
