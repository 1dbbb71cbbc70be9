"""A Trigger dispatcher's Prometheus metrics (served on its own port by __main__).

The ingress' counters (received, confirmed, refused) are in ingress.py. RabbitMQ's own view of
the same queues (rabbitmq_queue_messages_ready{queue=...}) comes from rabbitmq_prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.registry = registry
        labels = ("trigger",)
        self.delivered = Counter(
            "ripple_trigger_events_delivered",
            "Events the subscriber acknowledged (2xx)",
            labels,
            registry=registry,
        )
        self.retried = Counter(
            "ripple_trigger_events_retried",
            "Retries of deliveries to the subscriber",
            labels,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "ripple_trigger_events_dead_lettered",
            "Events the dead-letter sink acknowledged after the subscriber failed",
            labels,
            registry=registry,
        )
        self.dead_letter_failures = Counter(
            "ripple_trigger_dead_letter_failures",
            "Failed attempts to reach the dead-letter sink (the event goes back to the dead-letter queue)",
            labels,
            registry=registry,
        )
        self.discarded = Counter(
            "ripple_trigger_events_discarded",
            "Messages acked without delivery: not a CloudEvent, or failed with no dead-letter sink",
            ("trigger", "reason"),
            registry=registry,
        )
        self.latency = Histogram(
            "ripple_trigger_delivery_seconds",
            "From first attempt to final outcome, retries included",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.depth = Gauge(
            "ripple_trigger_queue_depth",
            "Messages ready in the Trigger's queue and its dead-letter queue (not yet delivered)",
            ("trigger", "queue"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "ripple_trigger_in_flight", "Messages received and not yet settled", labels, registry=registry
        )
        self.connected = Gauge(
            "ripple_trigger_connected",
            "1 while the dispatcher is consuming from RabbitMQ",
            labels,
            registry=registry,
        )
        self.reconnects = Counter(
            "ripple_trigger_reconnects", "Lost or refused RabbitMQ connections", labels, registry=registry
        )
