"""Sample events of the catalog, for tests, benchmarks and checks on a running system.

Many tests need "an order" or "a CloudEvent of this type from tenant acme"; they build it here
instead of each writing the dictionary again. `order_data` is order.placed data the catalog
accepts (a unit test validates it), `cloud_event` a CloudEvent with the attributes every ripple
event carries: specversion 1.0, a fresh id, JSON content and tenant acme, any of which the caller
overrides.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudevents.http import CloudEvent

ORDER_PLACED = "dev.ripple.shop.order.placed"
ORDER_FLAGGED = "dev.ripple.shop.order.flagged"


def order_data(
    order_id: str = "o-1",
    amount: float = 20.0,
    *,
    quantity: int = 2,
    customer_id: str = "c-1",
    sku: str = "sku-1",
) -> dict[str, Any]:
    """order.placed data: `quantity` pieces of one item, priced so that they add up to `amount`."""
    return {
        "orderId": order_id,
        "customerId": customer_id,
        "items": [{"sku": sku, "quantity": quantity, "unitPrice": amount / quantity}],
        "amount": amount,
        "currency": "EUR",
    }


def cloud_event(event_type: str, data: Any, source: str = "/test", **attributes: str) -> CloudEvent:
    """A CloudEvent of `event_type` with a fresh id, JSON content and tenant acme; `attributes`
    add to or replace those."""
    defaults = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "tenant": "acme",
    }
    return CloudEvent(defaults | attributes, data)
