"""One thread-safe KafkaProducer per process, shared by all request threads.

acks=all + idempotence make an acknowledged record durable and not duplicated by producer
retries. linger_ms lets the records of concurrent requests share produce requests, while
each request still waits for the acknowledgement of its own records. Every wait is bounded
(max_block_ms, delivery_timeout_ms), so with Kafka down a request fails with 503 in seconds.

The producer is created lazily in the worker process (gunicorn imports the function in its
master and forks: a producer's I/O thread would not survive the fork) and re-created when
creating it failed, so the gateway recovers from a Kafka outage at startup by itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from ripple_auth import Problem

from .config import Config
from .events import KafkaRecord
from .metrics import KAFKA_ACK_SECONDS

log = logging.getLogger(__name__)

# After a failed producer creation, requests fail fast for this long instead of each waiting.
CREATE_RETRY_S = 1.0


class KafkaUnavailable(Problem):
    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(
            503,
            "kafka-unavailable",
            f"{detail}; nothing of this request was acknowledged: retry it after {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


class Publisher:
    def __init__(self, config: Config, factory: Callable[..., Any] = KafkaProducer) -> None:
        self._config = config
        self._factory = factory
        self._producer: Any = None
        self._pid = 0
        self._lock = threading.Lock()
        self._failed_at = float("-inf")

    def producer_options(self) -> dict[str, Any]:
        c = self._config
        return {
            "bootstrap_servers": c.kafka_bootstrap_servers,
            "client_id": f"ripple-gateway-{os.getpid()}",
            # Explicit: kafka-python silently turns defaulted idempotence off on conflicting options.
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": c.kafka_linger_ms,
            "batch_size": c.kafka_batch_bytes,
            "request_timeout_ms": c.kafka_request_timeout_ms,
            "delivery_timeout_ms": c.kafka_delivery_timeout_ms,
            "max_block_ms": c.kafka_max_block_ms,
            "bootstrap_timeout_ms": c.kafka_max_block_ms,
            # Reconnect quickly once Kafka is back (the default backs off up to 30 s).
            "reconnect_backoff_max_ms": 1000,
        }

    def _get(self) -> Any:
        producer = self._producer
        if producer is not None and self._pid == os.getpid():
            return producer
        with self._lock:
            if self._producer is not None and self._pid == os.getpid():
                return self._producer
            if time.monotonic() - self._failed_at < CREATE_RETRY_S:
                raise KafkaUnavailable("Kafka is unreachable", self._config.retry_after_s)
            try:
                self._producer = self._factory(**self.producer_options())
            except (KafkaError, OSError, ValueError) as error:
                self._failed_at = time.monotonic()
                log.warning("Kafka producer could not start: %s", error)
                raise KafkaUnavailable("Kafka is unreachable", self._config.retry_after_s) from None
            self._pid = os.getpid()
            return self._producer

    def publish(self, records: Sequence[KafkaRecord]) -> None:
        """Return once Kafka acknowledged every record; KafkaUnavailable (503) otherwise."""
        producer = self._get()
        started = time.perf_counter()
        futures = []
        try:
            for record in records:
                futures.append(
                    producer.send(record.topic, value=record.value, key=record.key, headers=record.headers)
                )
            # A record is failed by the producer at delivery_timeout_ms; the margin covers the
            # sender thread noticing it. get() never waits longer than that.
            deadline = started + self._config.kafka_delivery_timeout_ms / 1000 + 1.0
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.perf_counter()))
        except MessageSizeTooLargeError:
            # The client's event is too big for one Kafka record: its fault, and the producer is fine.
            raise Problem(
                413,
                "payload-too-large",
                "an event is larger than one Kafka record may be (about 1 MiB with its attributes): "
                "make its data smaller",
            ) from None
        except KafkaError as error:
            log.warning("Kafka did not acknowledge %d record(s): %s", len(records), error)
            self._discard(producer)
            raise KafkaUnavailable(
                "Kafka did not acknowledge the events", self._config.retry_after_s
            ) from None
        KAFKA_ACK_SECONDS.observe(time.perf_counter() - started)

    def _discard(self, producer: Any) -> None:
        """Replace a producer that failed to deliver.

        After an outage kafka-python's idempotent producer can stay stuck (expired batches leave
        its sequence numbers behind; observed: acks never came back after Kafka restarted). A
        new producer starts clean; records of the old one fail, so their requests answer 503.
        """
        with self._lock:
            if self._producer is not producer:
                return  # another request already replaced it
            self._producer = None
            self._failed_at = time.monotonic()

        def close() -> None:
            try:
                # close() alone gives up in flush() while Kafka is down and leaves the I/O thread
                # running; force_close aborts the pending batches first (their requests get 503).
                producer._sender.force_close()
                producer._sender.join(5)
                producer.close(timeout=0)
            except Exception as error:  # closing a broken producer may fail; nothing to save
                log.debug("closing the failed producer: %s", error)

        threading.Thread(target=close, name="close-failed-producer", daemon=True).start()

    def ready(self) -> tuple[bool, str]:
        """Cheap and truthful: the producer exists, knows every topic and is connected to a broker."""
        try:
            producer = self._get()
        except KafkaUnavailable:
            return False, "Kafka is unreachable"
        try:
            client = producer._sender._client  # kafka-python has no public connectivity check
            nodes = [broker.node_id for broker in client.cluster.brokers()]
            if not any(client.connected(node) for node in nodes):
                # Idle connections may have been closed: start reconnecting (non-blocking, the
                # producer's I/O thread completes it) and answer for now.
                for node in nodes:
                    client.maybe_connect(node)
                return False, "not connected to any Kafka broker"
        except AttributeError as error:  # a changed private API must not fail the probe
            log.debug("readiness connectivity check unavailable: %s", error)
        return True, "ok"

    def topics_known(self, topics: Sequence[str]) -> list[str]:
        """Topics Kafka has no metadata for (fetches it, bounded by max_block_ms)."""
        missing = []
        producer = self._get()
        for topic in topics:
            try:
                if not producer.partitions_for(topic):
                    missing.append(topic)
            except KafkaError:
                missing.append(topic)
        return missing
