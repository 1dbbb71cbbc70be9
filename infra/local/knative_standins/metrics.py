"""Declaring a stand-in's Prometheus metrics: one registry, the labels most series carry, one line each.

The KafkaSource dispatcher, the Trigger dispatcher and the Broker ingress each export a handful of
counters, gauges and histograms on a registry of their own (served on their own port). `Metrics`
holds that registry and the default label names, so each metric is declared by its name and help
text alone; a metric with other labels names them. The names are the ones the dashboards and the
alert rules query: they are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, labels: Sequence[str], registry: CollectorRegistry | None = None) -> None:
        self.labels = tuple(labels)
        self.registry = registry or CollectorRegistry()

    def counter(self, name: str, documentation: str, labels: Sequence[str] | None = None) -> Counter:
        return Counter(name, documentation, self._labels(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] | None = None) -> Gauge:
        return Gauge(name, documentation, self._labels(labels), registry=self.registry)

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], labels: Sequence[str] | None = None
    ) -> Histogram:
        return Histogram(name, documentation, self._labels(labels), buckets=buckets, registry=self.registry)

    def _labels(self, labels: Sequence[str] | None) -> tuple[str, ...]:
        return self.labels if labels is None else tuple(labels)
