"""The shared outcome counters keep the names the dashboards and the alert rules query."""

from __future__ import annotations

import pytest

from knative_standins.broker.metrics import DispatcherMetrics as TriggerMetrics
from knative_standins.kafkasource.metrics import DispatcherMetrics as KafkaSourceMetrics


@pytest.mark.parametrize(
    ("metrics", "prefix", "labels"),
    [
        (KafkaSourceMetrics, "ripple_dispatcher", ("kafkasource", "topic")),
        (TriggerMetrics, "ripple_trigger", ("trigger",)),
    ],
)
def test_outcome_counters_keep_their_names_and_labels(metrics, prefix, labels):
    m = metrics()
    names = {family.name for family in m.registry.collect()}
    for suffix in ("events_delivered", "events_retried", "events_dead_lettered", "dead_letter_failures"):
        assert f"{prefix}_{suffix}" in names
    assert m.delivered._labelnames == labels
