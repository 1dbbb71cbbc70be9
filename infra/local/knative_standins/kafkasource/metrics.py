"""The dispatcher's Prometheus metrics (served on its own port by __main__)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from knative_standins.delivery.metrics import DeliveryMetrics
from knative_standins.metrics import Metrics


class DispatcherMetrics(DeliveryMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        metrics = Metrics(("kafkasource", "topic"), registry)
        super().__init__(metrics, "ripple_dispatcher", "sink", "the partition waits meanwhile")
        self.discarded = metrics.counter(
            "ripple_dispatcher_events_discarded",
            "Events that failed with no dead-letter sink configured (Knative drops them too)",
        )
        self.latency = metrics.histogram(
            "ripple_dispatcher_delivery_latency_seconds",
            "From first attempt to final outcome (acknowledged or dead-lettered), retries included",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.lag = metrics.gauge(
            "ripple_dispatcher_consumer_lag",
            "Records of a partition not yet committed (high watermark - committed offset)",
            ("kafkasource", "topic", "partition"),
        )
        self.in_flight = metrics.gauge(
            "ripple_dispatcher_in_flight", "Records received and not yet completed", ("kafkasource",)
        )
