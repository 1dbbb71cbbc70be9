"""Prometheus metrics of the gateway (all named ripple_gateway_*), served at GET /metrics.

Token checks count their failures in ripple_auth_failures_total{reason} and key fetches in
ripple_auth_jwks_refreshes_total{outcome} (package ripple_auth, shared with the query function);
they are served at the same /metrics.

Label values are bounded: event types come from the catalog ("unknown" otherwise, so a client
cannot blow up cardinality), statuses are HTTP codes, auth reasons a fixed set.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "ripple_gateway_requests_total",
    "POST requests by HTTP status and event type (mixed for batches of several types)",
    ["status", "event_type"],
)
REQUEST_SECONDS = Histogram(
    "ripple_gateway_request_duration_seconds",
    "Time from request start to response, POST requests",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
KAFKA_ACK_SECONDS = Histogram(
    "ripple_gateway_kafka_ack_duration_seconds",
    "Time from handing a request's records to the producer until Kafka acknowledged all of them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_ACCEPTED = Counter(
    "ripple_gateway_events_accepted_total", "Events acknowledged by Kafka and answered 202", ["event_type"]
)
BATCH_SIZE = Histogram(
    "ripple_gateway_batch_size_events",
    "Events per accepted request (1 for binary and structured mode)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)


# The labelled children, looked up once per label value (labels() takes a lock and builds a
# tuple on every call). Label values are bounded (above), so are these caches.
@cache
def requests(status: int, event_type: str) -> Any:
    """REQUESTS' child for an HTTP status and event type."""
    return REQUESTS.labels(status=str(status), event_type=event_type)


@cache
def accepted(event_type: str) -> Any:
    """EVENTS_ACCEPTED's child for an event type."""
    return EVENTS_ACCEPTED.labels(event_type=event_type)


def exposition() -> tuple[bytes, str]:
    """The metrics of every worker process of this instance.

    An instance is one process (ripple_server), so this is its registry. Served by a server with
    several worker processes instead, PROMETHEUS_MULTIPROC_DIR pointed at a fresh folder before
    it starts makes prometheus-client keep every metric in per-process files there, and whichever
    worker answers GET /metrics sums them (only counters and histograms are used: they add up).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
