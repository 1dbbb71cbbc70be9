"""Consume a KafkaSource's topics and deliver each record to its sink, Knative-style.

One asyncio event loop (uvloop when installed) does the scheduling, the HTTP deliveries
(deliver.py, over pooled keep-alive connections) and the offset bookkeeping (offsets.py); the
KafkaConsumer is only ever called from one extra thread (kafka-python is not thread-safe and
blocks), one call at a time.

- When each record goes out is its ordering's choice (orderings.py: one class per ordering, as
  upstream has one verticle each). In both at most `max_in_flight` records are outstanding
  (Knative bounds the same thing with max.poll.records); at the bound the dispatcher stops taking
  records from Kafka until some complete.
- Either way an offset is committed only once it and every earlier offset of its partition
  were acknowledged by the sink or by the dead-letter sink: at least once, never lost. A
  dead-letter sink that is down is retried until it answers, so the partition waits instead of
  dropping the event (Knative's data plane would commit after its retries; ripple prefers to
  block). A restarted dispatcher resumes from the committed offsets.
- The consumer is a member of the KafkaSource's consumerGroup (subscribe, as upstream's consumer
  verticles do), so two dispatchers on one manifest (a Deployment rolling a new pod beside the
  old one) share the partitions instead of both delivering everything. On a revoke the records
  still on the wire get a second to finish (upstream's rebalance listener waits up to 1 s per
  handler), the done prefix of each revoked partition is committed, and the partition's state is
  forgotten; completions that arrive later are ignored (the new owner redelivers from the commit).
  Lost partitions (membership expired) are forgotten without a commit. Assigned partitions start
  from the group's committed offset, or `initialOffset` when it has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ..delivery import loop as event_loop
from ..delivery.sender import HttpSender
from .convert import Record, to_http
from .deliver import Deliverer, wait_event
from .manifest import KafkaSource
from .metrics import DispatcherMetrics
from .offsets import OffsetTracker, PartitionOffsets
from .orderings import ordering_of

log = logging.getLogger("ripple.kafkasource")
T = TypeVar("T")

# How long a stopping dispatcher lets deliveries already on the wire finish; anything unfinished
# stays uncommitted and is redelivered after the restart (the supervisor waits 20 s).
STOP_GRACE_S = 10.0
# Longest wait for a quarter of the in-flight window to free up before polling for less.
REFILL_WAIT_S = 0.05
# How long a revoke lets deliveries of the revoked partitions that are on the wire finish before
# their done offsets are committed (upstream's rebalance listener waits 1 s per handler).
REVOKE_GRACE_S = 1.0
# A rebalance that has not assigned anything this long after the revoke is stuck: kafka-python
# 3.0.12 was seen hanging in the SyncGroup of a second rebalance right after the first join (the
# cluster's order-alerts dispatcher, 2026-12-03). The process then exits so its supervisor
# (Kubernetes, supervisord) starts a fresh one; the revoke already committed what was done.
REBALANCE_STUCK_S = 60.0
# How often topics that did not exist are looked for again (and the metadata refreshed, so added
# partitions reach the group's assignment).
TOPIC_CHECK_S = 30


@dataclass(frozen=True)
class DispatcherConfig:
    source: KafkaSource
    sink_url: str
    dead_letter_url: str | None
    bootstrap_servers: tuple[str, ...]
    max_in_flight: int = 100
    commit_interval_s: float = 1.0
    poll_timeout_ms: int = 200
    # The group's failure detection (upstream's session.timeout.ms): a dispatcher killed without
    # leaving the group holds its partitions this long (Kafka's floor: group.min.session.timeout.ms).
    session_timeout_ms: int = 10_000
    # "all": assign every partition to this one process (the local stack: one dispatcher per
    # manifest); "group": subscribe as a member of consumerGroup (the cluster's ContainerSource,
    # whose rolling Deployment runs two at once). See README, deviation on `consumers`.
    assignment: str = "all"


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=message.timestamp,
        key=message.key,
        value=message.value,
        headers=tuple(message.headers or ()),
    )


class Rebalance(AsyncConsumerRebalanceListener):
    """The group's rebalance callbacks, which kafka-python runs on its own IO thread.

    The offsets and the orderings live on the dispatcher's event loop, so each callback hands its
    work to that loop and waits for it (a second at most: the loop never blocks on Kafka, every
    consumer call runs on the consumer's thread). Commits go through commit_async and are awaited
    on the IO loop: a blocking consumer call from that thread would deadlock kafka-python.
    """

    def __init__(
        self, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop, consumer: KafkaConsumer
    ) -> None:
        self.dispatcher, self.loop, self.consumer = dispatcher, loop, consumer

    def _on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(REVOKE_GRACE_S + 10)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = self._on_loop(self.dispatcher.revoked(set(revoked)))
        if not offsets:
            return
        try:
            await self.consumer.commit_async({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as error:  # the new owner starts from the previous commit: duplicates only
            log.warning("commit of revoked partitions failed (%s); their new owner redelivers", error)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_loop(self.dispatcher.assigned(set(assigned)))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Membership expired: the partitions may already be another member's; commit nothing.
        self._on_loop(self.dispatcher.lost(set(lost)))


class Dispatcher:
    def __init__(self, config: DispatcherConfig, metrics: DispatcherMetrics) -> None:
        self.config = config
        self.source = config.source
        self.metrics = metrics
        self.offsets = OffsetTracker()
        self._tasks: set[asyncio.Task] = set()
        self._kafka_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")
        # Poll again once this many records fit: refilling the window in batches rather than
        # one poll per completed record (each poll is a hop to the consumer's thread).
        self._refill = max(1, config.max_in_flight // 4)
        self._stopping = asyncio.Event()  # set by SIGTERM / SIGINT
        self._room = asyncio.Event()  # set when at least `_refill` records fit again
        self._owned: set[TopicPartition] = set()  # what the group assigned us now
        self._on_wire: dict[TopicPartition, int] = {}  # deliveries in progress per partition
        self._subscribed: set[str] = set()
        self._listener: Rebalance | None = None
        self._rebalancing_since: float | None = None  # a revoke with no assignment after it yet
        self._rewind: set[TopicPartition] = set()  # newly assigned: fetch from the commit
        self.ordering = ordering_of(
            config.source.ordering, self._deliver, self._done, self._spawn, self.offsets, self._stopping
        )

    # --- entry points --------------------------------------------------------------------------

    def run(self) -> None:
        """Dispatch until SIGTERM or SIGINT, on uvloop when it is installed (as the activator):
        libuv's loop and transports cost less CPU per delivery than asyncio's selector loop
        (loadtest/dispatcher/profiles/README.md, 2026-12-03)."""
        event_loop.run(self._main())

    async def _kafka(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a KafkaConsumer call on the consumer's own thread (one at a time)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kafka_thread, lambda: call(*args, **kwargs))

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = self._stopping
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        consumer = await self._kafka(
            KafkaConsumer,
            bootstrap_servers=list(self.config.bootstrap_servers),
            group_id=self.source.consumer_group,
            client_id=f"ripple-kafkasource-{self.source.name}",
            enable_auto_commit=False,
            auto_offset_reset=self.source.initial_offset,
            # As Knative's dispatcher: records of aborted or open transactions are never sent.
            isolation_level="read_committed",
            max_poll_records=self.config.max_in_flight,
            # As config-kafka-source-data-plane: session 10 s, heartbeat 3 s, and the client's
            # default (range, eager) assignment, its assignor line being commented out upstream.
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=min(3000, self.config.session_timeout_ms // 3),
            metadata_max_age_ms=TOPIC_CHECK_S * 1000,
        )
        self._listener = Rebalance(self, loop, consumer)
        sender = HttpSender(
            self.source.delivery.timeout_s,
            self.config.max_in_flight,
            # As Knative's dispatcher sends them, after the event's own headers.
            {"Prefer": "reply", "Kn-Namespace": self.source.namespace},
        )
        async with sender:
            self.deliverer = Deliverer(
                sender,
                self.config.sink_url,
                self.config.dead_letter_url,
                self.source.delivery,
                self.metrics,
                self.source.name,
                stopping,
            )
            try:
                await self._poll_loop(consumer, stopping)
            finally:
                stopping.set()
                if self._tasks:
                    # Deliveries waiting on a backoff see `stopping` and give up at once; those
                    # on the wire get a moment to finish so their offsets can be committed.
                    _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
                    for task in late:
                        task.cancel()
                await self._commit(consumer)
                await self._kafka(consumer.close, autocommit=False)
                self._kafka_thread.shutdown(wait=True)
                log.info("kafkasource %s stopped", self.source.name)

    # --- consumer side -------------------------------------------------------------------------

    async def _poll_loop(self, consumer: KafkaConsumer, stopping: asyncio.Event) -> None:
        await self._subscribe(consumer)  # topics that do not exist yet are picked up within 30 s
        log.info(
            "kafkasource %s: %s -> %s (%s, dead letters: %s)",
            self.source.name,
            ",".join(self.source.topics),
            self.config.sink_url,
            self.source.ordering,
            self.config.dead_letter_url or "none",
        )
        in_flight = self.metrics.in_flight.labels(self.source.name)
        last_commit = last_lag = 0.0
        last_topics = time.monotonic()
        while not stopping.is_set():
            in_flight.set(self.offsets.outstanding)
            if self.config.max_in_flight - self.offsets.outstanding < self._refill:
                # Wait for a batch's worth of room, but only briefly: records of a partition that
                # is stuck (a sink down) must not starve the other partitions of what room is left.
                self._room.clear()
                await wait_event(self._room, REFILL_WAIT_S)
            room = self.config.max_in_flight - self.offsets.outstanding
            if not self._subscribed:  # none of the topics exists yet
                await wait_event(stopping, self.config.poll_timeout_ms / 1000)
            elif room > 0:
                # The bound is applied by asking poll() for no more than this, and by not polling
                # at all at zero, rather than with pause()/resume(): kafka-python 3.0.12 parks the
                # buffered records of a paused partition and, once the in-line slot held a drained
                # batch, never restores them, which stalls the partition for good.
                batches = await self._kafka(
                    consumer.poll, timeout_ms=self.config.poll_timeout_ms, max_records=room
                )
                if self._rewind:  # assigned during that poll
                    batches = await self._start_from_commit(consumer, batches)
                for tp, messages in batches.items():
                    self._accept(tp, messages)
            now = time.monotonic()
            if now - last_commit >= self.config.commit_interval_s:
                await self._commit(consumer)
                last_commit = now
            if now - last_lag >= 5:
                await self._kafka(self._update_lag, consumer, self.offsets.committed_offsets())
                last_lag = now
            if now - last_topics >= TOPIC_CHECK_S:  # topics created since
                await self._subscribe(consumer)
                last_topics = now
            if rebalance_stuck(self._rebalancing_since, now):
                log.error(
                    "kafkasource %s: the group's rebalance has assigned nothing for %.0f s (a known "
                    "kafka-python hang); exiting so that a fresh dispatcher joins",
                    self.source.name,
                    now - (self._rebalancing_since or now),
                )
                logging.shutdown()
                os._exit(3)  # close() would wait on the same hung coordinator

    def _accept(self, tp: TopicPartition, messages: list) -> None:
        if tp not in self._owned:  # fetched just before a revoke: its new owner has it
            return
        state = self.offsets.get(tp)
        # A record fetched again (e.g. after a reassignment) is already queued, in flight or done.
        fresh = [_record(m) for m in messages if self.offsets.receive(tp, state, m.offset)]
        self.ordering.accept(tp, state, fresh)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, consumer: KafkaConsumer) -> None:
        offsets = self.offsets.to_commit()
        if not offsets:
            return
        try:
            await self._kafka(
                consumer.commit, {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
            )
        except KafkaError as error:
            log.warning("offset commit failed (%s); it is retried", error)
            return
        self.offsets.committed(offsets)

    def _update_lag(self, consumer: KafkaConsumer, committed: dict) -> None:
        """On the consumer's thread: lag per partition = high watermark - committed offset."""
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = committed.get(tp)
            if position is None:
                try:
                    position = consumer.committed(tp)
                except KafkaError:
                    position = None
            if highwater is not None and position is not None:
                self.metrics.lag.labels(self.source.name, tp.topic, str(tp.partition)).set(
                    max(highwater - position, 0)
                )

    async def _subscribe(self, consumer: KafkaConsumer) -> bool:
        """Join the consumerGroup for the topics that exist; True once all of them exist.

        A topic that does not exist yet is left out of the subscription (a join made before a
        topic's metadata arrived can leave kafka-python 3.0.12 stuck in the rebalance that
        follows) and added once it exists: subscribing again with more topics rebalances.
        """
        existing, missing = [], []
        for topic in self.source.topics:
            partitions = await self._kafka(consumer.partitions_for_topic, topic)
            (existing if partitions else missing).append(topic)
        if missing:
            log.warning("topics %s do not exist (yet); waiting for them", ", ".join(missing))
        if existing and set(existing) != self._subscribed and self.config.assignment == "all":
            wanted = {
                TopicPartition(topic, p)
                for topic in existing
                for p in await self._kafka(consumer.partitions_for_topic, topic)
            }
            await self._kafka(consumer.assign, sorted(wanted))
            await self.revoked(self._owned - wanted)
            await self.assigned(wanted - self._owned)
            self._rewind.clear()  # assign() keeps no stale position: the group's commit applies
            self._subscribed = set(existing)
            return not missing
        if existing and set(existing) != self._subscribed:
            await self._kafka(consumer.subscribe, topics=existing, listener=self._listener)
            self._subscribed = set(existing)
            log.info("subscribed to %s in consumer group %s", ", ".join(existing), self.source.consumer_group)
        return not missing

    # --- rebalance callbacks (run on the loop, called from Rebalance) ---------------------------

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """The group gave us these partitions (with the cooperative protocol: these in addition)."""
        self._owned |= partitions
        self._rebalancing_since = None
        self._rewind |= partitions
        for tp in partitions:
            self.offsets.get(tp)  # a new owner starts from the group's committed offset
        log.info("partitions assigned: %s", _names(partitions) or "none")

    async def revoked(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Stop starting records of these partitions, let those on the wire finish for a moment,
        forget the partitions and return the done offsets to commit before they change hands."""
        self._owned -= partitions
        self.ordering.keep_only(self._owned)
        if not self._stopping.is_set():
            self._rebalancing_since = time.monotonic()
        deadline = time.monotonic() + REVOKE_GRACE_S
        while (
            not self._stopping.is_set()
            and any(self._on_wire.get(tp) for tp in partitions)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        offsets = {tp: offset for tp, offset in self.offsets.to_commit().items() if tp in partitions}
        self._forget(partitions)
        log.info(
            "partitions revoked: %s (committing %s)", _names(partitions) or "none", offsets or "nothing new"
        )
        return offsets

    async def _start_from_commit(self, consumer: KafkaConsumer, batches: dict) -> dict:
        """Make newly assigned partitions start at the group's committed offset.

        kafka-python keeps the fetch position of a partition that an eager rebalance revokes and
        assigns straight back (`assign_from_subscribed`), while the revoke forgot its offsets:
        without this, a record on the wire at the revoke would never be committed (its
        completion belongs to the forgotten state) and the partition's commit would stall for
        good (seen on the cluster). Records fetched in the same poll for a partition sought back
        are dropped and fetched again; a partition without a commit keeps its position and its
        records (nothing of it was done: the revoke commits the done prefix).
        """
        rewind, self._rewind = self._rewind, set()
        sought = await self._kafka(self._seek_to_committed, consumer, rewind)
        self.offsets.forget(sought)  # nothing of them was accepted since the assignment
        return {tp: messages for tp, messages in batches.items() if tp not in sought}

    def _seek_to_committed(
        self, consumer: KafkaConsumer, partitions: set[TopicPartition]
    ) -> set[TopicPartition]:
        """On the consumer's thread: seek each still-assigned partition that has a committed
        offset to it; return those sought."""
        sought = set()
        for tp in partitions & consumer.assignment():
            try:
                committed = consumer.committed(tp)
            except KafkaError as error:
                log.warning("reading the committed offset of %s failed (%s)", _names({tp}), error)
                continue
            if committed is not None:
                consumer.seek(tp, committed)
                sought.add(tp)
        return sought

    async def lost(self, partitions: set[TopicPartition]) -> None:
        self._owned -= partitions
        self.ordering.keep_only(self._owned)
        self._forget(partitions)
        log.warning("partitions lost (group membership expired): %s", _names(partitions) or "none")

    def _forget(self, partitions: set[TopicPartition]) -> None:
        self.offsets.forget(partitions)
        for tp in partitions:
            with contextlib.suppress(KeyError):  # a revoked partition's lag is its new owner's
                self.metrics.lag.remove(self.source.name, tp.topic, str(tp.partition))
        if self.config.max_in_flight - self.offsets.outstanding >= self._refill:
            self._room.set()

    # --- delivery side -------------------------------------------------------------------------

    async def _deliver(self, record: Record) -> bool:
        """Deliver one record; True once done (acknowledged or dead-lettered), False if stopped."""
        stopping = self._stopping
        tp = TopicPartition(record.topic, record.partition)
        on_wire = self._on_wire
        on_wire[tp] = on_wire.get(tp, 0) + 1
        try:
            return await self._deliver_until_done(record, stopping)
        finally:
            on_wire[tp] -= 1

    async def _deliver_until_done(self, record: Record, stopping: asyncio.Event) -> bool:
        while not stopping.is_set():
            try:
                event = to_http(record, self.source.namespace, self.source.name, self.source.ce_overrides)
                where = f"{record.topic}-{record.partition}@{record.offset}"
                return await self.deliverer.deliver(event, record.topic, where)
            except Exception:  # a bug: say so and try again, never skip the record silently
                log.exception(
                    "delivering %s-%d@%d failed unexpectedly", record.topic, record.partition, record.offset
                )
                await wait_event(stopping, 5)
        return False

    def _done(self, tp: TopicPartition, state: PartitionOffsets, offset: int) -> None:
        self.offsets.complete(tp, state, offset)
        if self.config.max_in_flight - self.offsets.outstanding >= self._refill:
            self._room.set()


def rebalance_stuck(since: float | None, now: float, limit_s: float = REBALANCE_STUCK_S) -> bool:
    """True once a rebalance begun at `since` (monotonic) has gone `limit_s` without an assignment."""
    return since is not None and now - since >= limit_s


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions))
