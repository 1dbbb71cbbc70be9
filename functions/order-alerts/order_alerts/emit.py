"""Alerts to Kafka in the CloudEvents Kafka binding (binary mode), acks=all."""

from __future__ import annotations

import threading

from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from kafka import KafkaProducer

from .config import Config


class AlertPublisher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _get(self) -> KafkaProducer:
        # Created on first use, in the serving worker (gunicorn forks after import).
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=list(self.config.bootstrap_servers),
                    acks="all",
                    enable_idempotence=True,
                    client_id="ripple-order-alerts",
                )
            return self._producer

    def publish(self, event: CloudEvent) -> None:
        """Return once Kafka acknowledged the event; raise KafkaError otherwise."""
        message = to_binary(event)
        key = message.key.encode() if isinstance(message.key, str) else message.key
        future = self._get().send(
            self.config.topic, key=key, value=message.value, headers=list(message.headers.items())
        )
        future.get(timeout=self.config.ack_timeout_s)
