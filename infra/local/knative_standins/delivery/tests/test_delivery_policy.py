"""delivery.policy: which answers Knative retries, and how long it waits between attempts."""

from __future__ import annotations

import pytest

from knative_standins.delivery.policy import backoff_s, dead_letter_backoff_s, is_retryable
from knative_standins.delivery.spec import Delivery


def test_backoff_follows_knatives_formula():
    linear = Delivery(retry=3, backoff_policy="linear", backoff_delay_s=0.5)
    exponential = Delivery(retry=3, backoff_policy="exponential", backoff_delay_s=0.5)
    assert [backoff_s(linear, n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [backoff_s(exponential, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert backoff_s(Delivery(backoff_delay_s=0), 4) == 0
    assert dead_letter_backoff_s(exponential, 40) == 30.0


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *((status, True) for status in (None, 500, 503, 404, 408, 409, 429)),
        *((status, False) for status in (400, 401, 403, 413, 422, 302)),
    ],
)
def test_which_statuses_are_retried(status, retried):
    assert is_retryable(status) is retried
