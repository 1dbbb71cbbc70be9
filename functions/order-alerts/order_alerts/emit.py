"""Alerts out: to Kafka (CloudEvents Kafka binding, binary mode, acks=all) and to the Broker.

1. ripple.shop.alerts (ALERT_TOPIC) keeps the replayable record of every alert, which the
   event-store KafkaSource reads.
2. The notifications Broker (BROKER_URL, an HTTP CloudEvents ingress) routes the alert to its
   Trigger (notifier). Its 202 means RabbitMQ confirmed the event; anything else
   (503 while RabbitMQ is down, no answer) stops the request with 503 problem+json, so the
   KafkaSource retries and the alert, not yet marked emitted, is sent again with the same id.
   An empty BROKER_URL sends to Kafka only.

| variable | default | what |
|---|---|---|
| BROKER_URL | (empty: no Broker) | the Broker's ingress (notifications-broker-ingress) |
| BROKER_TIMEOUT_S | 10 | a Broker that does not answer in time fails the request (503, retried) |

The Kafka producer is confluent-kafka (librdkafka), as the gateway's: acks=all and idempotence,
each alert waiting for its own delivery report (served by ripple_kafka's report thread), bounded by
KAFKA_ACK_TIMEOUT_S, after which librdkafka expires the record unsent. kafka-python's pure-Python
accumulator, sender thread and future were ~1.8 ms of the ~5.5 ms of CPU a flagged order cost
(issue 19, loadtest/broker/alert_cpu.py); librdkafka does that work in C, outside the GIL.
Records are partitioned with murmur2, as kafka-python did, so a key keeps its partition.

The Broker is posted to with http.client on one kept-alive connection per worker thread
(BrokerConnections): first a requests Session, whose hooks, cookie jar and adapter layers were most
of the post's CPU (py-spy of the issue-19 bursts, loadtest/broker/profiles/), then urllib3's pool,
whose own layers were still half of it.

Both bindings' headers are written here from the alert's attributes (order_alerts/alerts.py's
AlertMessage) as the SDK's conversions write them (cloudevents.kafka.to_binary; to_binary with
ripple_cloudevents' percent-encoding for HTTP), without building an SDK CloudEvent to take apart
twice; tests/test_order_alerts_emit.py compares them with the SDK's.
"""

from __future__ import annotations

import http.client
import logging
import os
import select
import threading
from typing import Any
from urllib.parse import urlsplit

from ripple_cloudevents import encode_value
from ripple_consumer.database import ConfigError, env_number
from ripple_consumer.http import problem
from ripple_kafka import ReportedProducer

from .alerts import AlertMessage
from .config import Config

log = logging.getLogger("order-alerts")

# Beyond KAFKA_ACK_TIMEOUT_S (librdkafka's delivery.timeout.ms), for the report of the expiry.
REPORT_MARGIN_S = 1.0


class KafkaUnacknowledged(Exception):
    """Kafka did not acknowledge the alert (answered 503: the KafkaSource redelivers it)."""


def kafka_headers(message: AlertMessage) -> list[tuple[str, bytes]]:
    """The record's headers (Kafka binding, binary mode): content-type and ce_<attribute>, UTF-8.

    The SDK moves partitionkey into the record key only; it stays a header too, as the gateway
    writes it, so the KafkaSource delivers the same attributes as the Broker does.
    """
    attributes = message.attributes
    headers = [("content-type", attributes["datacontenttype"].encode())]
    headers += [
        ("ce_" + name, value.encode())
        for name, value in attributes.items()
        if name not in ("datacontenttype", "partitionkey")
    ]
    headers.append(("ce_partitionkey", message.key))
    return headers


def http_headers(message: AlertMessage) -> dict[str, str]:
    """The request's headers (HTTP binding, binary mode): Content-Type and ce-<attribute>,
    percent-encoded (ripple_cloudevents)."""
    headers = {"content-type": message.attributes["datacontenttype"]}
    for name, value in message.attributes.items():
        if name != "datacontenttype":
            headers["ce-" + name] = encode_value(value)
    return headers


class _Delivery:
    """One record's delivery report: `report` runs on the report thread, `wait` on the request's."""

    __slots__ = ("_reported", "error")

    def __init__(self) -> None:
        self.error: Any = None
        # A plain lock held until the report comes: the cheapest one-shot signal between threads.
        self._reported = threading.Lock()
        self._reported.acquire()

    def report(self, error: Any, _message: Any) -> None:
        self.error = error
        self._reported.release()

    def wait(self, timeout_s: float) -> bool:
        return self._reported.acquire(timeout=timeout_s)


class AlertPublisher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._current: ReportedProducer | None = None
        self._fatal = False
        self._lock = threading.Lock()
        self.broker_url = os.environ.get("BROKER_URL", "").strip()
        self.broker_timeout_s = env_number(os.environ, "BROKER_TIMEOUT_S", 10)
        if self.broker_url:
            self._broker = BrokerConnections(self.broker_url, self.broker_timeout_s)

    @property
    def ack_timeout_ms(self) -> int:
        return max(int(self.config.ack_timeout_s * 1000), 1)

    def producer_options(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": ",".join(self.config.bootstrap_servers),
            "client.id": "ripple-order-alerts",
            "acks": "all",
            "enable.idempotence": True,
            # A record not acknowledged in KAFKA_ACK_TIMEOUT_S fails (503) and expires unsent;
            # one produce request may take all of it (Kafka's rule: delivery >= request + linger).
            "delivery.timeout.ms": self.ack_timeout_ms,
            "request.timeout.ms": self.ack_timeout_ms,
            # Sent at once, as kafka-python did (librdkafka waits 5 ms by default): an alert is on
            # its order's critical path, and concurrent alerts still share the requests in flight.
            "linger.ms": 0,
            # With Nagle's algorithm a report now and then waited for a delayed ACK (up to ~50 ms
            # on loopback, against ~0.3 ms without: 50 serial alerts measured).
            "socket.nagle.disable": True,
            # kafka-python's (and the Java client's) partitioner: a key keeps its partition.
            "partitioner": "murmur2_random",
            # Reconnect quickly once Kafka is back (the default backs off up to 10 s).
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
            # librdkafka logs every reconnect attempt; failures reach the log as 503s instead.
            "log_level": 2,
        }

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            log.error("Kafka producer failed for good, replacing it: %s", error)
            self._fatal = True
        else:
            log.debug("Kafka producer: %s", error)

    def _producer(self) -> Any:
        # Created on first use, in the serving worker (a server that forks after import would
        # lose a producer's threads in the fork), and replaced after a fatal error.
        current = self._current
        if current is not None and current.pid == os.getpid() and not self._fatal:
            return current.producer
        with self._lock:
            current = self._current
            if current is None or current.pid != os.getpid() or self._fatal:
                if current is not None and current.pid == os.getpid():
                    current.close()
                # confluent-kafka is imported by the first alert, not at the cold start: ~75 ms of
                # it, for the few orders above the threshold (issue 22).
                from confluent_kafka import KafkaException, Producer

                self._fatal = False
                try:
                    current = self._current = ReportedProducer(Producer(self.producer_options()))
                except (KafkaException, ValueError, TypeError) as error:
                    raise KafkaUnacknowledged(f"the producer could not start: {error}") from None
            return current.producer

    def publish(self, message: AlertMessage) -> None:
        """Return once Kafka acknowledged the alert and the Broker confirmed it (both awaited at once).

        Raises KafkaUnacknowledged when Kafka did not acknowledge; stops the request with 503
        broker-unavailable when the Broker did not answer 2xx.
        """
        from confluent_kafka import KafkaException

        delivery = _Delivery()
        try:
            self._producer().produce(
                self.config.topic,
                value=message.body,
                key=message.key,
                headers=kafka_headers(message),
                on_delivery=delivery.report,
            )
        except (KafkaException, BufferError) as error:
            raise KafkaUnacknowledged(f"the producer refused the alert: {error}") from None
        # The Broker's publisher confirm and Kafka's acks=all are awaited side by side rather than
        # one after the other (a flagged order's two longest waits, ~30 and ~20 ms measured in the
        # issue-19 burst): neither path depends on the other, both must succeed before the alert
        # is marked emitted, and a redelivery re-sends both with the same id (stored once).
        if self.broker_url:
            self._to_broker(message)
        if not delivery.wait(self.config.ack_timeout_s + REPORT_MARGIN_S):
            raise KafkaUnacknowledged("no delivery report in time")
        if delivery.error is not None:
            raise KafkaUnacknowledged(str(delivery.error))

    def _to_broker(self, message: AlertMessage) -> None:
        status, answer = self._broker.post(message.body, http_headers(message))
        if status is not None and 200 <= status < 300:
            return
        if status is not None:
            log.warning("the Broker answered %s: %s", status, answer[:200].decode(errors="replace"))
        else:
            log.warning("the Broker at %s did not answer: %s", self.broker_url, answer.decode())
        raise problem(
            503,
            "broker-unavailable",
            "Broker unavailable",
            f"the notifications Broker did not confirm the alert (status {status}); retry later",
        )


class BrokerConnections(threading.local):
    """POSTs to the Broker's ingress on one kept-alive HTTP/1.1 connection per worker thread.

    http.client directly rather than urllib3's pool: the pool's URL parsing, header merging,
    retry and timeout objects were half of a post's ~0.3 ms of client CPU (the same 202 answers
    cost ~0.16 ms here: microbenchmark against a loopback server). No retries, as before: a
    failed post fails the request (503) and the KafkaSource redelivers. As urllib3 does, a kept
    connection the server has closed meanwhile (idle timeout) is noticed before it is reused
    (readable while idle means EOF) and replaced, so that case sends nothing twice.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"BROKER_URL={url!r} must be an http(s) URL, or empty for Kafka only.")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Each connect, send and receive is bounded by it (urllib3's total was one bound for all).
        self.timeout_s = timeout_s
        self.connection: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        connection = self.connection
        if connection is not None and connection.sock is not None:
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:  # closed by the server while idle (or an unasked answer): start over
                connection.close()
        if connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            connection = self.connection = kind(self.host, self.port, timeout=self.timeout_s)
        return connection

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, bytes]:
        """(status, answer body) of the POST, or (None, why) when there was no answer."""
        connection = self._connection()
        try:
            connection.request("POST", self.target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            return None, repr(error).encode()
