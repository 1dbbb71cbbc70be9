"""order-alerts' pure parts: the order -> alert delay read from the order event's time."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from order_alerts.alerts import order_delay_s

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def order(**attributes: object) -> CloudEvent:
    base = {"specversion": "1.0", "id": "o-1", "source": "/t", "type": "dev.ripple.shop.order.placed"}
    event = CloudEvent(base, {"orderId": "o-1", "amount": 5000})
    if "time" in event:
        del event["time"]  # the SDK stamps a time; the cases below set their own or none
    for name, value in attributes.items():
        event[name] = value
    return event


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"time": "2026-12-03T09:59:58.500Z"}, 1.5),
        ({"time": "2026-12-03T11:59:58.500+02:00"}, 1.5),  # any offset
        ({"time": "2026-12-03T09:59:58.500"}, 1.5),  # no offset: read as UTC
        ({"time": "2026-12-03T10:00:05Z"}, 0.0),  # the sender's clock ahead of ours
        ({"time": "yesterday"}, None),
        ({}, None),
    ],
)
def test_order_delay_is_read_from_the_order_events_time(attributes: dict, expected: float | None) -> None:
    assert order_delay_s(order(**attributes), NOW) == expected
