"""scaler.Load: concurrency integrated over time and requests counted between two takes, the
per-second stat the activator reports to the autoscaler (time passed in, so exact)."""

from __future__ import annotations

import pytest

from knative_standins.serving.scaler import Load

# (events: list of (kind, time)), take time, expected (average concurrency, requests/s)
CASES = {
    "idle second": ([], 1.0, (0.0, 0.0)),
    "one request for the whole second": ([("enter", 0.0)], 1.0, (1.0, 1.0)),
    "one request for half a second": ([("enter", 0.0), ("leave", 0.5)], 1.0, (0.5, 1.0)),
    "two overlapping": ([("enter", 0.0), ("enter", 0.25), ("leave", 0.75), ("leave", 1.0)], 1.0, (1.5, 2.0)),
    "four short ones in two seconds": (
        [
            *[("enter", 0.0), ("leave", 0.1), ("enter", 0.5), ("leave", 0.6)],
            *[("enter", 1.0), ("leave", 1.1), ("enter", 1.5), ("leave", 1.6)],
        ],
        2.0,
        (0.2, 2.0),
    ),
}


@pytest.mark.parametrize(("events", "at", "expected"), CASES.values(), ids=CASES.keys())
def test_take_averages_concurrency_and_rate_since_the_last_take(events, at, expected):
    load = Load(now=0.0)
    for kind, now in events:
        getattr(load, kind)(now)
    concurrency, rate = load.take(at)
    assert concurrency == pytest.approx(expected[0]) and rate == pytest.approx(expected[1])


def test_a_request_in_flight_at_take_counts_on_in_the_next_window():
    load = Load(now=0.0)
    load.enter(0.5)
    assert load.take(1.0) == pytest.approx((0.5, 1.0))
    assert load.take(2.0) == pytest.approx((1.0, 0.0))  # still in flight, not a new request
    load.leave(2.5)
    assert load.take(3.0) == pytest.approx((0.5, 0.0))
