"""The sample events are what the catalog accepts, and callers' attributes win over the defaults."""

from __future__ import annotations

import pytest

from ripple_events import load_catalog
from ripple_events.samples import ORDER_FLAGGED, ORDER_PLACED, cloud_event, order_data


@pytest.mark.parametrize(
    "data",
    [order_data(), order_data("o-9", 4750, quantity=500), order_data("o-late", 7.5, quantity=3, sku="s-2")],
)
def test_order_data_is_a_valid_order(data):
    assert load_catalog().get(ORDER_PLACED).schema_errors(data) == []
    assert sum(item["quantity"] * item["unitPrice"] for item in data["items"]) == data["amount"]


def test_cloud_event_defaults_and_overrides():
    first, second = cloud_event(ORDER_FLAGGED, {}), cloud_event(ORDER_FLAGGED, {}, "/s", tenant="globex")
    assert first["id"] != second["id"]
    assert (first["specversion"], first["source"], first["tenant"]) == ("1.0", "/test", "acme")
    assert (second["source"], second["tenant"], second["datacontenttype"]) == (
        "/s",
        "globex",
        "application/json",
    )
