"""A Trigger dispatcher's Prometheus metrics (served on its own port by __main__).

The ingress' counters (received, confirmed, refused) are in ingress.py. RabbitMQ's own view of
the same queues (rabbitmq_queue_messages_ready{queue=...}) comes from rabbitmq_prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from knative_standins.delivery.metrics import DeliveryMetrics
from knative_standins.metrics import Metrics


class DispatcherMetrics(DeliveryMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        metrics = Metrics(("trigger",), registry)
        super().__init__(
            metrics, "ripple_trigger", "subscriber", "the event goes back to the dead-letter queue"
        )
        self.discarded = metrics.counter(
            "ripple_trigger_events_discarded",
            "Messages acked without delivery: not a CloudEvent, or failed with no dead-letter sink",
            ("trigger", "reason"),
        )
        self.latency = metrics.histogram(
            "ripple_trigger_delivery_seconds",
            "From first attempt to final outcome, retries included",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.depth = metrics.gauge(
            "ripple_trigger_queue_depth",
            "Messages ready in the Trigger's queue and its dead-letter queue (not yet delivered)",
            ("trigger", "queue"),
        )
        self.in_flight = metrics.gauge("ripple_trigger_in_flight", "Messages received and not yet settled")
        self.connected = metrics.gauge(
            "ripple_trigger_connected", "1 while the dispatcher is consuming from RabbitMQ"
        )
        self.reconnects = metrics.counter("ripple_trigger_reconnects", "Lost or refused RabbitMQ connections")
