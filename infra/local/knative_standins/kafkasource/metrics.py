"""The dispatcher's Prometheus metrics (served on its own port by __main__)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.registry = registry
        labels = ("kafkasource", "topic")
        self.delivered = Counter(
            "ripple_dispatcher_events_delivered",
            "Events the sink acknowledged (2xx)",
            labels,
            registry=registry,
        )
        self.retried = Counter(
            "ripple_dispatcher_events_retried", "Retries of deliveries to the sink", labels, registry=registry
        )
        self.dead_lettered = Counter(
            "ripple_dispatcher_events_dead_lettered",
            "Events the dead-letter sink acknowledged after the sink failed",
            labels,
            registry=registry,
        )
        self.dead_letter_failures = Counter(
            "ripple_dispatcher_dead_letter_failures",
            "Failed attempts to reach the dead-letter sink (the partition waits meanwhile)",
            labels,
            registry=registry,
        )
        self.discarded = Counter(
            "ripple_dispatcher_events_discarded",
            "Events that failed with no dead-letter sink configured (Knative drops them too)",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "ripple_dispatcher_delivery_latency_seconds",
            "From first attempt to final outcome (acknowledged or dead-lettered), retries included",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.lag = Gauge(
            "ripple_dispatcher_consumer_lag",
            "Records of a partition not yet committed (high watermark - committed offset)",
            ("kafkasource", "topic", "partition"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "ripple_dispatcher_in_flight",
            "Records received and not yet completed",
            ("kafkasource",),
            registry=registry,
        )
