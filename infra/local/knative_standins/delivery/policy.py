"""Which failures Knative retries, and how long it waits: the delivery spec as functions.

Mirrors eventing-kafka-broker's data plane (dispatcher/impl/http/WebClientCloudEventSender):
a response >= 300 is a failure; 5xx, 404, 408, 409 and 429 are retried (the Knative eventing
data-plane spec's list), other statuses are not; errors without a response (timeouts, refused
connections) are retried. Attempt n (1-based) of `retry` waits backoffDelay * n (linear) or
backoffDelay * 2^n (exponential) before it is sent.
"""

from __future__ import annotations

from .spec import LINEAR, Delivery

RETRYABLE_STATUSES = frozenset({404, 408, 409, 429})
# Ceiling of the wait between attempts to reach a dead-letter sink that is down: the dispatcher
# keeps trying (it blocks rather than dropping), but should notice quickly once it is back.
DEAD_LETTER_MAX_BACKOFF_S = 30.0


def is_success(status: int) -> bool:
    return 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """None stands for "no response at all" (timeout, connection refused): always retryable."""
    return status is None or status >= 500 or status in RETRYABLE_STATUSES


def backoff_s(delivery: Delivery, retry_number: int) -> float:
    """Seconds to wait before retry number `retry_number` (1 for the first retry)."""
    if delivery.backoff_delay_s <= 0:
        return 0.0
    if delivery.backoff_policy == LINEAR:
        return delivery.backoff_delay_s * retry_number
    return delivery.backoff_delay_s * 2**retry_number


def dead_letter_backoff_s(delivery: Delivery, attempt: int) -> float:
    """Wait before the next attempt to reach the dead-letter sink: the policy's, capped."""
    return min(backoff_s(delivery, min(attempt, 30)) or 1.0, DEAD_LETTER_MAX_BACKOFF_S)
