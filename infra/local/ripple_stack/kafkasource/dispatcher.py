"""Consume a KafkaSource's topics and deliver each record to its sink, Knative-style.

Threads: the main thread owns the KafkaConsumer (kafka-python is not thread-safe) and does
polling, flow control, offset commits and lag; a pool of workers does the HTTP deliveries.

- ordered: the records of one partition are delivered one at a time, in offset order (what
  Knative's OrderedConsumerVerticle does, which keeps per-key order since a key maps to one
  partition); partitions proceed in parallel.
- unordered: every record is handed to the pool at once. In both modes at most `max_in_flight`
  records are outstanding (Knative bounds the same thing with max.poll.records); at the bound
  the dispatcher stops taking records from Kafka until some complete.
- Either way an offset is committed only once it and every earlier offset of its partition
  were acknowledged by the sink or by the dead-letter sink: at least once, never lost. A
  dead-letter sink that is down is retried until it answers, so the partition waits instead of
  dropping the event (Knative's data plane would commit after its retries; ripple prefers to
  block). A restarted dispatcher resumes from the committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from .convert import Record, to_cloudevent, with_error_extensions
from .delivery import backoff_s, dead_letter_backoff_s, is_retryable, is_success
from .manifest import ORDERED, KafkaSource
from .metrics import DispatcherMetrics

log = logging.getLogger("ripple.kafkasource")


@dataclass(frozen=True)
class DispatcherConfig:
    source: KafkaSource
    sink_url: str
    dead_letter_url: str | None
    bootstrap_servers: tuple[str, ...]
    max_in_flight: int = 100
    commit_interval_s: float = 1.0
    poll_timeout_ms: int = 200


@dataclass(frozen=True)
class Response:
    status: int | None  # None: no response (timeout, connection refused, ...)
    body: bytes | None
    error: str = ""


class Sender:
    """POSTs CloudEvents in HTTP binary mode; one keep-alive session per worker thread."""

    def __init__(self, timeout_s: float, namespace: str) -> None:
        self.timeout_s = timeout_s
        self.namespace = namespace
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post(self, url: str, event: CloudEvent) -> Response:
        headers, body = to_binary(event)
        # As Knative's dispatcher sends them.
        headers = {**headers, "Prefer": "reply", "Kn-Namespace": self.namespace}
        try:
            response = self._session().post(url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as error:
            return Response(None, None, f"{type(error).__name__}: {error}")
        return Response(response.status_code, response.content)


@dataclass
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # received offsets, in order
    done: set[int] = field(default_factory=set)
    queue: deque[Record] = field(default_factory=deque)  # ordered mode: waiting for their turn
    running: bool = False
    next_commit: int | None = None  # one past the last offset of the done prefix
    committed: int | None = None
    last_received: int | None = None


def _record(message: object) -> Record:
    return Record(
        topic=message.topic,  # type: ignore[attr-defined]
        partition=message.partition,  # type: ignore[attr-defined]
        offset=message.offset,  # type: ignore[attr-defined]
        timestamp_ms=message.timestamp,  # type: ignore[attr-defined]
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
        headers=tuple(message.headers or ()),  # type: ignore[attr-defined]
    )


class Dispatcher:
    def __init__(
        self, config: DispatcherConfig, metrics: DispatcherMetrics, stopping: threading.Event
    ) -> None:
        self.config = config
        self.source = config.source
        self.delivery = config.source.delivery
        self.metrics = metrics
        self.stopping = stopping
        self.ordered = config.source.ordering == ORDERED
        self.sender = Sender(self.delivery.timeout_s, config.source.namespace)
        self.pool = ThreadPoolExecutor(max_workers=config.max_in_flight, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._partitions: dict[TopicPartition, _Partition] = {}

    # --- delivery (worker threads) -------------------------------------------------------------

    def deliver(self, record: Record) -> bool:
        """Deliver one record; True once acknowledged or dead-lettered, False if stopped first."""
        event = to_cloudevent(record, self.source.namespace, self.source.name)
        for name, value in self.source.ce_overrides.items():
            event[name] = value
        labels = (self.source.name, record.topic)
        started = time.monotonic()
        retries = 0
        while True:
            response = self.sender.post(self.config.sink_url, event)
            if response.status is not None and is_success(response.status):
                self.metrics.delivered.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(time.monotonic() - started)
                return True
            if not is_retryable(response.status) or retries >= self.delivery.retry:
                break
            retries += 1
            self.metrics.retried.labels(*labels).inc()
            log.info(
                "retry %d/%d of %s/%s (%s) to %s after %s",
                retries,
                self.delivery.retry,
                event["source"],
                event["id"],
                f"{record.topic}-{record.partition}@{record.offset}",
                self.config.sink_url,
                response.status or response.error,
            )
            if self.stopping.wait(backoff_s(self.delivery, retries)):
                return False
        log.warning(
            "delivery of %s/%s (%s-%d@%d) failed: %s",
            event["source"],
            event["id"],
            record.topic,
            record.partition,
            record.offset,
            response.status or response.error,
        )
        if self.config.dead_letter_url is None:
            self.metrics.discarded.labels(*labels).inc()
            return True
        dead = with_error_extensions(event, self.config.sink_url, response.status, response.body)
        attempt = 0
        while True:
            answer = self.sender.post(self.config.dead_letter_url, dead)
            if answer.status is not None and is_success(answer.status):
                self.metrics.dead_lettered.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(time.monotonic() - started)
                return True
            attempt += 1
            self.metrics.dead_letter_failures.labels(*labels).inc()
            log.error(
                "dead-letter sink %s refused %s/%s (attempt %d: %s); the partition waits",
                self.config.dead_letter_url,
                event["source"],
                event["id"],
                attempt,
                answer.status or answer.error,
            )
            if self.stopping.wait(dead_letter_backoff_s(self.delivery, attempt)):
                return False

    def _run(self, tp: TopicPartition, state: _Partition, record: Record) -> None:
        completed = False
        while not self.stopping.is_set():
            try:
                completed = self.deliver(record)
                break
            except Exception:  # a bug: say so and try again, never skip the record silently
                log.exception(
                    "delivering %s-%d@%d failed unexpectedly", record.topic, record.partition, record.offset
                )
                self.stopping.wait(5)
        with self._lock:
            if self._partitions.get(tp) is not state:
                return  # the partition was revoked meanwhile; its new owner redelivers
            if completed:
                state.done.add(record.offset)
            if self.ordered:
                if completed and state.queue and not self.stopping.is_set():
                    self.pool.submit(self._run, tp, state, state.queue.popleft())
                else:
                    state.running = False

    # --- consumer side (main thread) ----------------------------------------------------------

    def _accept(self, tp: TopicPartition, record: Record) -> None:
        with self._lock:
            state = self._partitions.setdefault(tp, _Partition())
            if state.last_received is not None and record.offset <= state.last_received:
                return  # fetched again (e.g. after a reassignment): already queued, in flight or done
            state.last_received = record.offset
            state.pending.append(record.offset)
            if not self.ordered:
                self.pool.submit(self._run, tp, state, record)
                return
            state.queue.append(record)
            if not state.running:
                state.running = True
                self.pool.submit(self._run, tp, state, state.queue.popleft())

    def _room(self) -> int:
        """How many more records may be taken from Kafka now (the bound minus those not yet done).

        The bound is applied by asking poll() for no more than this, and by not polling at all at
        zero, rather than with pause()/resume(): kafka-python 3.0.12 parks the buffered records
        of a paused partition and, once the in-line slot held a drained batch, never restores
        them, which stalls the partition for good.
        """
        with self._lock:
            outstanding = sum(len(s.pending) - len(s.done) for s in self._partitions.values())
        self.metrics.in_flight.labels(self.source.name).set(outstanding)
        return self.config.max_in_flight - outstanding

    def _commit(self, consumer: KafkaConsumer) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        with self._lock:
            for tp, state in self._partitions.items():
                while state.pending and state.pending[0] in state.done:
                    offset = state.pending.popleft()
                    state.done.discard(offset)
                    state.next_commit = offset + 1
                if state.next_commit is not None and state.next_commit != state.committed:
                    offsets[tp] = OffsetAndMetadata(state.next_commit, "", -1)
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except KafkaError as error:
            log.warning("offset commit failed (%s); it is retried", error)
            return
        with self._lock:
            for tp, meta in offsets.items():
                state = self._partitions.get(tp)
                if state is not None:
                    state.committed = meta.offset

    def _update_lag(self, consumer: KafkaConsumer) -> None:
        with self._lock:
            committed = {tp: s.committed for tp, s in self._partitions.items()}
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

    def _assign(self, consumer: KafkaConsumer) -> bool:
        """Take every partition of the topics; True once all topics exist.

        Locally one dispatcher runs per KafkaSource, so it assigns itself all partitions instead
        of joining the group's rebalancing (kafka-python 3.0.12 can hang in a rebalance that
        follows a first join made before the topic metadata arrived). Offsets are still
        committed to, and resumed from, the KafkaSource's consumerGroup.
        """
        wanted: list[TopicPartition] = []
        missing = []
        for topic in self.source.topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                missing.append(topic)
            wanted.extend(TopicPartition(topic, p) for p in sorted(partitions or ()))
        if missing:
            log.warning("topics %s do not exist (yet); waiting for them", ", ".join(missing))
        if set(wanted) != set(consumer.assignment()):
            consumer.assign(wanted)
            with self._lock:
                for tp in list(self._partitions):
                    if tp not in wanted:
                        del self._partitions[tp]
                for tp in wanted:
                    self._partitions.setdefault(tp, _Partition())
            log.info(
                "partitions assigned: %s", ", ".join(f"{tp.topic}-{tp.partition}" for tp in wanted) or "none"
            )
        return not missing

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=list(self.config.bootstrap_servers),
            group_id=self.source.consumer_group,
            client_id=f"ripple-kafkasource-{self.source.name}",
            enable_auto_commit=False,
            auto_offset_reset=self.source.initial_offset,
            max_poll_records=self.config.max_in_flight,
        )
        self._assign(consumer)  # topics that do not exist yet are picked up within 30 s
        log.info(
            "kafkasource %s: %s -> %s (%s, dead letters: %s)",
            self.source.name,
            ",".join(self.source.topics),
            self.config.sink_url,
            self.source.ordering,
            self.config.dead_letter_url or "none",
        )
        last_commit = last_lag = 0.0
        last_assign = time.monotonic()
        try:
            while not self.stopping.is_set():
                room = self._room()
                if room > 0:
                    batches = consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=room)
                    for tp, messages in batches.items():
                        for message in messages:
                            self._accept(tp, _record(message))
                else:
                    self.stopping.wait(0.01)
                now = time.monotonic()
                if now - last_commit >= self.config.commit_interval_s:
                    self._commit(consumer)
                    last_commit = now
                if now - last_lag >= 5:
                    self._update_lag(consumer)
                    last_lag = now
                if now - last_assign >= 30:  # topics created or partitions added since
                    self._assign(consumer)
                    last_assign = now
        finally:
            # Deliveries still waiting on backoff see `stopping` and give up without completing:
            # their offsets stay uncommitted and are redelivered after the restart.
            self.stopping.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._commit(consumer)
            consumer.close(autocommit=False)
            log.info("kafkasource %s stopped", self.source.name)
