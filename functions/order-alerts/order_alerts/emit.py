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

The Broker is posted to with urllib3's pool (thread-safe, kept-alive connections) rather than a
requests Session: requests' hooks, cookie jar and adapter layers were most of the post's CPU,
which was a third of a flagged order's (py-spy of the issue-19 bursts, loadtest/broker/profiles/).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary

from ripple_cloudevents import to_binary_request
from ripple_consumer.database import env_number
from ripple_consumer.http import problem

from .config import Config

if TYPE_CHECKING:
    import urllib3
    from kafka import KafkaProducer

log = logging.getLogger("order-alerts")


class AlertPublisher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self.broker_url = os.environ.get("BROKER_URL", "").strip()
        self.broker_timeout_s = env_number(os.environ, "BROKER_TIMEOUT_S", 10)
        self._http: urllib3.PoolManager | None = None

    def _get(self) -> KafkaProducer:
        # Created on first use, in the serving worker (gunicorn forks after import).
        with self._lock:
            if self._producer is None:
                # kafka-python (and urllib3, below) are imported by the first alert, not at the cold
                # start: ~100-180 ms of it, for the few orders above the threshold (issue 22).
                from kafka import KafkaProducer

                self._producer = KafkaProducer(
                    bootstrap_servers=list(self.config.bootstrap_servers),
                    acks="all",
                    enable_idempotence=True,
                    client_id="ripple-order-alerts",
                )
            return self._producer

    def publish(self, event: CloudEvent) -> None:
        """Return once Kafka acknowledged the event and the Broker confirmed it (both awaited at once).

        Raises KafkaError when Kafka did not acknowledge; stops the request with 503
        broker-unavailable when the Broker did not answer 2xx.
        """
        message = to_binary(event)
        key = message.key.encode() if isinstance(message.key, str) else message.key
        # The SDK moves partitionkey into the record key only; keep it as a header too, as the
        # gateway does, so the KafkaSource delivers the same attributes as the Broker does.
        headers = [*message.headers.items(), ("ce_partitionkey", key)]
        future = self._get().send(self.config.topic, key=key, value=message.value, headers=headers)
        # The Broker's publisher confirm and Kafka's acks=all are awaited side by side rather than
        # one after the other (a flagged order's two longest waits, ~30 and ~20 ms measured in the
        # issue-19 burst): neither path depends on the other, both must succeed before the alert
        # is marked emitted, and a redelivery re-sends both with the same id (stored once).
        if self.broker_url:
            self._to_broker(event)
        future.get(timeout=self.config.ack_timeout_s)

    def _pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._http is None:
                import urllib3  # by the first alert, like kafka-python: not at the cold start

                # One kept-alive connection per worker thread in flight (asyncio.to_thread's
                # pool); no retries: a failed post fails the request, the KafkaSource redelivers.
                self._http = urllib3.PoolManager(
                    maxsize=8, retries=False, timeout=urllib3.Timeout(total=self.broker_timeout_s)
                )
            return self._http

    def _to_broker(self, event: CloudEvent) -> None:
        import urllib3

        headers, body = to_binary_request(event)  # attribute values percent-encoded (HTTP binding)
        try:
            response = self._pool().request("POST", self.broker_url, body=body, headers=headers)
            status = response.status
        except urllib3.exceptions.HTTPError as error:
            status, response = None, None
            log.warning("the Broker at %s did not answer: %r", self.broker_url, error)
        if status is not None and 200 <= status < 300:
            return
        if response is not None:
            log.warning("the Broker answered %s: %s", status, response.data[:200].decode(errors="replace"))
        raise problem(
            503,
            "broker-unavailable",
            "Broker unavailable",
            f"the notifications Broker did not confirm the alert (status {status}); retry later",
        )
