"""kafkasource.dispatcher's group rebalance callbacks, without Kafka: what a revoke commits and
forgets, what an assign starts, what a lost partition leaves, in both orderings and in both orders
of the callbacks (eager: revoke everything, then assign; cooperative: assign more, revoke some)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import TopicPartition

from knative_standins.kafkasource.convert import Record
from knative_standins.kafkasource.dispatcher import Dispatcher, DispatcherConfig, rebalance_stuck
from knative_standins.kafkasource.manifest import load
from knative_standins.kafkasource.metrics import DispatcherMetrics

REPO = Path(__file__).resolve().parents[5]
P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def dispatcher(ordering: str) -> Dispatcher:
    source = load(REPO / "knative" / "event-store" / "kafkasource.yaml")
    source = replace(source, ordering=ordering)
    config = DispatcherConfig(
        source=source, sink_url="http://sink", dead_letter_url=None, bootstrap_servers=("k:9092",)
    )
    return Dispatcher(config, DispatcherMetrics())


def receive(d: Dispatcher, tp: TopicPartition, offsets: range) -> None:
    state = d.offsets.get(tp)
    for offset in offsets:
        assert d.offsets.receive(tp, state, offset)


@pytest.mark.parametrize("ordering", ["ordered", "unordered"])
def test_revoke_commits_the_done_prefix_and_forgets_the_partition(ordering):
    async def scenario():
        d = dispatcher(ordering)
        await d.assigned({P0, P1})
        receive(d, P0, range(4))
        receive(d, P1, range(2))
        state0 = d.offsets.get(P0)
        d._done(P0, state0, 0)
        d._done(P0, state0, 1)
        d._done(P0, state0, 3)  # 2 is not done: the commit stops before it
        assert d.offsets.outstanding == 3
        offsets = await d.revoked({P0})
        assert offsets == {P0: 2}
        assert d.offsets.outstanding == 2  # P1's two only
        d._done(P0, state0, 2)  # a late completion of a revoked partition is ignored
        assert d.offsets.outstanding == 2 and P0 not in d.offsets.to_commit()
        assert d._owned == {P1}

    asyncio.run(scenario())


def test_revoke_waits_for_a_delivery_on_the_wire_then_commits_it():
    async def scenario():
        d = dispatcher("unordered")
        await d.assigned({P0})
        receive(d, P0, range(1))
        state = d.offsets.get(P0)
        d._on_wire[P0] = 1

        async def finish():
            await asyncio.sleep(0.1)
            d._on_wire[P0] = 0
            d._done(P0, state, 0)

        task = asyncio.create_task(finish())
        offsets = await d.revoked({P0})
        await task
        assert offsets == {P0: 1}

    asyncio.run(scenario())


def test_revoke_stops_an_ordered_partition_from_starting_more_records():
    async def scenario():
        d = dispatcher("ordered")
        await d.assigned({P0})
        queue = d.ordering.queues.setdefault(P0, deque())
        queue.extend(Record("t", 0, o, 0, None, b"", ()) for o in range(3))
        await d.revoked({P0})
        assert not queue and P0 not in d.ordering.queues

    asyncio.run(scenario())


def test_eager_revoke_all_then_assign_again_starts_fresh_from_the_commit():
    async def scenario():
        d = dispatcher("unordered")
        await d.assigned({P0, P1})
        receive(d, P0, range(2))
        old = d.offsets.get(P0)
        d._done(P0, old, 0)
        assert await d.revoked({P0, P1}) == {P0: 1}
        await d.assigned({P0})
        new = d.offsets.get(P0)
        assert new is not old and new.last_received is None  # refetched from the committed offset
        assert d.offsets.receive(P0, new, 1)  # offset 1 was never done: delivered again
        d._done(P0, old, 1)  # the old state's completion does not count for the new one
        assert d.offsets.outstanding == 1

    asyncio.run(scenario())


def test_cooperative_assign_more_then_revoke_some_keeps_the_rest():
    async def scenario():
        d = dispatcher("ordered")
        await d.assigned({P0})
        receive(d, P0, range(2))
        kept = d.offsets.get(P0)
        await d.assigned({P1})  # incremental: P0 stays as it is
        assert d.offsets.get(P0) is kept and d._owned == {P0, P1}
        assert await d.revoked({P1}) == {}
        assert d._owned == {P0} and d.offsets.outstanding == 2

    asyncio.run(scenario())


def test_lost_partitions_are_forgotten_without_a_commit():
    async def scenario():
        d = dispatcher("unordered")
        await d.assigned({P0})
        receive(d, P0, range(2))
        d._done(P0, d.offsets.get(P0), 0)
        await d.lost({P0})
        assert d.offsets.to_commit() == {} and d.offsets.outstanding == 0 and not d._owned

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("since", "now", "stuck"),
    [(None, 1000.0, False), (100.0, 159.0, False), (100.0, 160.0, True), (100.0, 500.0, True)],
)
def test_a_rebalance_without_assignment_for_a_minute_is_stuck(since, now, stuck):
    assert rebalance_stuck(since, now, 60.0) is stuck


def test_revoke_starts_the_rebalance_clock_and_assign_stops_it():
    async def scenario():
        d = dispatcher("unordered")
        await d.assigned({P0})
        assert d._rebalancing_since is None
        await d.revoked({P0})
        assert d._rebalancing_since is not None
        await d.assigned({P0})
        assert d._rebalancing_since is None

    asyncio.run(scenario())


class FakeConsumer:
    """What _start_from_commit asks of the consumer: its assignment, committed offsets, seeks."""

    def __init__(self, assigned: set, committed: dict) -> None:
        self.assigned, self.commits, self.seeks = assigned, committed, {}

    def assignment(self) -> set:
        return self.assigned

    def committed(self, tp):
        return self.commits.get(tp)

    def seek(self, tp, offset) -> None:
        self.seeks[tp] = offset


def test_a_partition_assigned_back_starts_again_from_its_commit():
    """Eager rebalance: revoked with a record on the wire, assigned straight back; kafka-python
    kept the fetch position, so the dispatcher seeks to the commit and fetches the record again
    under the new state (which can then commit past it)."""

    async def scenario():
        d = dispatcher("ordered")
        await d.assigned({P0, P1})
        d._rewind.clear()
        receive(d, P0, range(3))
        d._done(P0, d.offsets.get(P0), 0)
        assert await d.revoked({P0, P1}) == {P0: 1}
        await d.assigned({P0, P1})
        consumer = FakeConsumer({P0, P1}, {P0: 1})  # P1 never committed: keeps its position
        batch = {P0: ["fetched at the kept position"], P1: ["p1 record"]}
        left = await d._start_from_commit(consumer, batch)
        assert consumer.seeks == {P0: 1}
        assert left == {P1: ["p1 record"]}  # P0 is fetched again; P1 (no commit) keeps its records
        assert not d._rewind and d.offsets.get(P0).last_received is None

    asyncio.run(scenario())
