"""One Kafka producer per process (confluent-kafka, i.e. librdkafka), shared by all requests.

acks=all + idempotence make an acknowledged record durable and not duplicated by producer
retries. linger.ms lets the records of concurrent requests share produce requests, while each
request still waits for the acknowledgement of its own records. Every wait is bounded
(delivery.timeout.ms), so with Kafka down a request fails with 503 in seconds, and records that
were never acknowledged expire in the producer, unsent.

Why librdkafka: profiled under wrk (loadtest/gateway/profiles/), kafka-python's pure-Python
partitioner, accumulator and sender thread took about a quarter of the gateway's CPU, under the
GIL; librdkafka does that work in its own C threads. Records are partitioned with murmur2, as
kafka-python and the Java client do, so a key keeps its partition (and its order).

The gateway is asynchronous: a request awaits the delivery reports of its records, which
librdkafka hands to ripple_kafka's report thread (poll); the thread settles the request's future on
its event loop. The producer is created lazily, on first use (a server that imports the function and then
forks workers would lose a producer's threads in the fork), and replaced after a fatal
error (e.g. the idempotent producer's state is lost).

Every record goes to KAFKA_TOPIC_PREFIX + its catalog topic: empty in a deployment; a benchmark's
private gateway sets its own prefix so that its events stay out of the stack's topics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ripple_auth import Problem
from ripple_kafka import ReportedProducer

from .config import Config
from .events import KafkaRecord
from .metrics import KAFKA_ACK_SECONDS

log = logging.getLogger(__name__)

# Bound of the readiness probe's metadata request.
READY_TIMEOUT_S = 2.0


class KafkaUnavailable(Problem):
    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(
            503,
            "kafka-unavailable",
            f"{detail}; nothing of this request was acknowledged: retry it after {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


def _too_large() -> Problem:
    # The client's event is too big for one Kafka record: its fault, and the producer is fine.
    return Problem(
        413,
        "payload-too-large",
        "an event is larger than one Kafka record may be (about 1 MiB with its attributes): "
        "make its data smaller",
    )


class _Acks:
    """The delivery reports of one request's records: done when all came, failed at the first error.

    `report` runs on the delivery-report thread; the request awaits `done` on its event loop.
    """

    __slots__ = ("done", "error", "loop", "remaining")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = count
        self.error: KafkaError | None = None
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()

    def report(self, error: KafkaError | None, _message: Message) -> None:
        # Only the report thread touches the counters: no lock needed.
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0 or (error is not None and self.error is error):
            self.loop.call_soon_threadsafe(self.settle)

    def settle(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Publisher:
    def __init__(self, config: Config, factory: Callable[[dict[str, Any]], Any] = Producer) -> None:
        self._config = config
        self._factory = factory
        self._current: ReportedProducer | None = None
        self._lock = threading.Lock()
        self._fatal = False
        self._down_logged = False
        self._prefix = config.kafka_topic_prefix

    def topic(self, name: str) -> str:
        """The Kafka topic the records of a catalog topic are produced to."""
        return self._prefix + name

    def producer_options(self) -> dict[str, Any]:
        c = self._config
        return {
            "bootstrap.servers": ",".join(c.kafka_bootstrap_servers),
            "client.id": f"ripple-gateway-{os.getpid()}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": c.kafka_linger_ms,
            "batch.size": c.kafka_batch_bytes,
            "message.max.bytes": c.kafka_max_record_bytes,
            "request.timeout.ms": c.kafka_request_timeout_ms,
            "delivery.timeout.ms": c.kafka_delivery_timeout_ms,
            # The Java client's (and kafka-python's) partitioner: a key keeps its partition.
            "partitioner": "murmur2_random",
            # Reconnect quickly once Kafka is back (the default backs off up to 10 s).
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
            # librdkafka logs every reconnect attempt (20 lines a second while Kafka is down);
            # failures reach the log through the delivery reports and error_cb instead.
            "log_level": 2,
        }

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("Kafka producer failed for good, replacing it: %s", error)
            self._fatal = True
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            # Said again on every reconnect attempt: logged once per outage (until an ack).
            if not self._down_logged:
                self._down_logged = True
                log.warning("Kafka producer: %s", error.str())
        else:
            log.debug("Kafka producer: %s", error)

    def _get(self) -> ReportedProducer:
        current = self._current
        if current is not None and current.pid == os.getpid() and not self._fatal:
            return current
        with self._lock:
            current = self._current
            if current is not None and current.pid == os.getpid() and not self._fatal:
                return current
            if current is not None and current.pid == os.getpid():
                current.close()
            try:
                self._fatal = False
                self._current = ReportedProducer(self._factory(self.producer_options()))
            except (KafkaException, ValueError, TypeError) as error:
                log.warning("Kafka producer could not start: %s", error)
                raise KafkaUnavailable("Kafka is unreachable", self._config.retry_after_s) from None
            return self._current

    def _produce(self, producer: Any, records: Sequence[KafkaRecord], acks: _Acks) -> None:
        """Hand every record to the producer, each reporting to `acks`; 413 or 503 if it refuses one."""
        try:
            prefix = self._prefix
            produce = producer.produce
            report = acks.report  # one bound method for all the request's records
            for record in records:
                produce(
                    prefix + record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=report,
                )
        except KafkaException as error:
            if error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise _too_large() from None
            log.warning("Kafka refused %d record(s): %s", len(records), error)
            raise KafkaUnavailable("Kafka refused the events", self._config.retry_after_s) from None
        except BufferError:
            log.warning("the Kafka producer's queue is full; answering 503")
            raise KafkaUnavailable("the gateway's Kafka queue is full", self._config.retry_after_s) from None

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        """Return once Kafka acknowledged every record; KafkaUnavailable (503) otherwise.

        The records are not referenced from here once produced (librdkafka holds copies), so a
        caller that drops its own reference lets them die before the wait (app.post_events).
        """
        producer = self._get().producer
        started = time.perf_counter()
        count = len(records)
        acks = _Acks(count, asyncio.get_running_loop())
        self._produce(producer, records, acks)
        del records
        # A record is failed by the producer at delivery.timeout.ms; the margin covers the
        # report thread noticing it. The wait never lasts longer than that. (A timer on the loop
        # rather than asyncio.wait, which builds a task set per request.)
        timer = acks.loop.call_later(self._config.kafka_delivery_timeout_ms / 1000 + 1.0, acks.settle)
        try:
            await acks.done
        finally:
            timer.cancel()
        error = acks.error
        if error is None and acks.remaining > 0:
            error = KafkaError(KafkaError._TIMED_OUT, "no delivery report in time")
        if error is not None:
            if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise _too_large()
            log.warning("Kafka did not acknowledge %d record(s): %s", count, error)
            raise KafkaUnavailable("Kafka did not acknowledge the events", self._config.retry_after_s)
        KAFKA_ACK_SECONDS.observe(time.perf_counter() - started)
        self._down_logged = False

    def ready(self) -> tuple[bool, str]:
        """Truthful: the producer exists and a broker answers a metadata request (bounded)."""
        try:
            producer = self._get().producer
        except KafkaUnavailable:
            return False, "Kafka is unreachable"
        try:
            metadata = producer.list_topics(timeout=READY_TIMEOUT_S)
        except KafkaException as error:
            return False, f"no Kafka broker answers: {error.args[0].str()}"
        if not metadata.brokers:
            return False, "not connected to any Kafka broker"
        return True, "ok"

    def topics_known(self, topics: Sequence[str]) -> list[str]:
        """Topics Kafka has no metadata for."""
        producer = self._get().producer
        missing = []
        for topic in topics:
            name = self.topic(topic)
            try:
                metadata = producer.list_topics(name, timeout=READY_TIMEOUT_S)
                if metadata.topics[name].error is not None or not metadata.topics[name].partitions:
                    missing.append(name)
            except (KafkaException, KeyError):
                missing.append(name)
        return missing
