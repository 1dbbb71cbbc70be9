"""The outcome counters both dispatchers keep: delivered, retried, dead-lettered, dead letter failed.

The KafkaSource dispatcher and the Trigger dispatcher count the same four outcomes of the shared
delivery policy (upstream's dispatchers count them in one ``event_count`` metric with the response
code as a label). Each keeps its own name prefix and labels, because the dashboards and the alert
rules query the names as they are: ``ripple_dispatcher_events_delivered`` and
``ripple_trigger_events_delivered``, ``..._events_retried``, ``..._events_dead_lettered``,
``..._dead_letter_failures``. Whatever else a dispatcher counts (discards, latency, lag, depth) it
declares itself, on the same `Metrics`.
"""

from __future__ import annotations

from knative_standins.metrics import Metrics


class DeliveryMetrics:
    """The four outcome counters, named ``<prefix>_…``; `target` is who the events go to."""

    def __init__(self, metrics: Metrics, prefix: str, target: str, when_dead_letter_fails: str) -> None:
        self.registry = metrics.registry
        self.delivered = metrics.counter(
            f"{prefix}_events_delivered", f"Events the {target} acknowledged (2xx)"
        )
        self.retried = metrics.counter(f"{prefix}_events_retried", f"Retries of deliveries to the {target}")
        self.dead_lettered = metrics.counter(
            f"{prefix}_events_dead_lettered",
            f"Events the dead-letter sink acknowledged after the {target} failed",
        )
        self.dead_letter_failures = metrics.counter(
            f"{prefix}_dead_letter_failures",
            f"Failed attempts to reach the dead-letter sink ({when_dead_letter_fails})",
        )
