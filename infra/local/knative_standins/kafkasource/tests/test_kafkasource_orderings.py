"""kafkasource.orderings: when each record goes out, per ordering (time and delivery simulated)."""

from __future__ import annotations

import asyncio
from collections import deque

from kafka import TopicPartition

from knative_standins.kafkasource.convert import Record
from knative_standins.kafkasource.offsets import OffsetTracker
from knative_standins.kafkasource.orderings import Ordered, Unordered, ordering_of

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def records(tp: TopicPartition, offsets: range) -> list[Record]:
    return [Record(tp.topic, tp.partition, o, 0, None, b"", ()) for o in offsets]


def run(kind: str, batches: list[tuple[TopicPartition, range]]) -> tuple[list[tuple[int, int]], int, list]:
    """Deliver the batches; (partition, offset) in delivery order, the most in flight at once, done."""

    async def scenario():
        offsets, stopping = OffsetTracker(), asyncio.Event()
        offsets.assign([P0, P1])
        started, done, tasks = [], [], set()
        in_flight = most = 0

        async def deliver(record: Record) -> bool:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            started.append((record.partition, record.offset))
            await asyncio.sleep(0.001)
            in_flight -= 1
            return True

        def spawn(coroutine):
            tasks.add(asyncio.create_task(coroutine))

        ordering = ordering_of(
            kind, deliver, lambda tp, state, o: done.append((tp.partition, o)), spawn, offsets, stopping
        )
        for tp, span in batches:
            state = offsets.get(tp)
            fresh = [r for r in records(tp, span) if offsets.receive(tp, state, r.offset)]
            ordering.accept(tp, state, fresh)
        while tasks:
            finished, _ = await asyncio.wait(tasks)
            tasks.difference_update(finished)
        return started, most, done

    return asyncio.run(scenario())


def test_unordered_sends_every_record_at_once():
    started, most, done = run("unordered", [(P0, range(5)), (P1, range(5))])
    assert most == 10 and sorted(done) == sorted(started) and len(done) == 10


def test_ordered_sends_one_record_per_partition_at_a_time_in_offset_order():
    started, most, done = run("ordered", [(P0, range(5)), (P1, range(3)), (P0, range(5, 8))])
    assert most == 2  # one per partition, the two partitions in parallel
    assert [o for p, o in started if p == 0] == list(range(8))
    assert [o for p, o in started if p == 1] == list(range(3))
    assert len(done) == 11


def test_classes_per_ordering_and_what_a_revoked_partition_leaves():
    assert isinstance(ordering_of("unordered", None, None, None, None, None), Unordered)
    ordered = ordering_of("ordered", None, None, lambda c: c.close(), OffsetTracker(), asyncio.Event())
    assert isinstance(ordered, Ordered)
    ordered.queues[P0] = deque(records(P0, range(2)))
    ordered.queues[P1] = deque(records(P1, range(2)))
    ordered.keep_only({P1})
    assert list(ordered.queues) == [P1]
