"""The decision (is this order an alert?), the idempotent state, and the alert event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from cloudevents.http import CloudEvent
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from .schema import order_alerts

ORDER_PLACED = "dev.ripple.shop.order.placed"
ORDER_FLAGGED = "dev.ripple.shop.order.flagged"
# Alert ids are uuid5(this, "<source>#<id>" of the order event): a redelivery yields the same id.
ALERT_NAMESPACE = uuid.UUID("6f1e2d7a-3b1c-5e4f-9a8b-7c6d5e4f3a2b")


class PermanentError(Exception):
    """The event can never be handled (answered 422, so the dispatcher dead-letters it)."""


@dataclass(frozen=True)
class Alert:
    tenant: str
    order_id: str
    alert_id: str
    amount: Decimal
    currency: str | None
    threshold: Decimal
    created_at: datetime
    emitted: bool


def alert_id_for(event: AnyCloudEvent) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{event['source']}#{event['id']}"))


def order_of(event: AnyCloudEvent) -> tuple[str, str, Decimal, str | None]:
    """(tenant, orderId, amount, currency) of an order.placed event, or PermanentError."""
    data: Any = event.get_data()
    tenant = event.get("tenant")
    if not tenant:
        raise PermanentError("the event has no tenant extension (the gateway always sets one)")
    if not isinstance(data, dict):
        raise PermanentError("the order data is not a JSON object")
    order_id, amount = data.get("orderId"), data.get("amount")
    if not isinstance(order_id, str) or not order_id:
        raise PermanentError("data.orderId is missing")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise PermanentError("data.amount is not a number")
    currency = data.get("currency")
    return tenant, order_id, Decimal(str(amount)), currency if isinstance(currency, str) else None


def above_threshold(event: AnyCloudEvent, threshold: float) -> bool:
    """Whether the order raises an alert (PermanentError for an order that is not one)."""
    return order_of(event)[2] > Decimal(str(threshold))


def record_alert(engine: Engine, event: AnyCloudEvent, threshold: float) -> Alert | None:
    """The alert for this order (created once per tenant/order), or None below the threshold."""
    tenant, order_id, amount, currency = order_of(event)
    limit = Decimal(str(threshold))
    if amount <= limit:
        return None
    row = {
        "tenant": tenant,
        "order_id": order_id,
        "alert_id": alert_id_for(event),
        "trigger_source": event["source"],
        "trigger_id": event["id"],
        "amount": amount,
        "currency": currency,
        "threshold": limit,
    }
    with engine.begin() as connection:
        # A new alert comes back from the INSERT itself; only a redelivery (the row was there)
        # needs the second round trip to read the stored one.
        stored = connection.execute(
            insert(order_alerts).values(**row).on_conflict_do_nothing().returning(*order_alerts.c)
        ).one_or_none()
        if stored is None:
            key = (order_alerts.c.tenant == tenant, order_alerts.c.order_id == order_id)
            stored = connection.execute(select(order_alerts).where(*key)).one()
    return Alert(
        tenant=stored.tenant,
        order_id=stored.order_id,
        alert_id=stored.alert_id,
        amount=stored.amount,
        currency=stored.currency,
        threshold=stored.threshold,
        created_at=stored.created_at,
        emitted=stored.emitted_at is not None,
    )


def mark_emitted(engine: Engine, alert: Alert) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(order_alerts)
            .where(order_alerts.c.tenant == alert.tenant, order_alerts.c.order_id == alert.order_id)
            .values(emitted_at=func.now())
        )


def order_delay_s(event: AnyCloudEvent, now: datetime) -> float | None:
    """Seconds from the order event's `time` to `now`; None without a readable `time`.

    The first hop of issue 19's order -> notification delay (the notifier's own metric starts at
    the alert); a clock ahead of ours gives 0, not a negative delay.
    """
    value = event.get("time")
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    placed = value if value.tzinfo else value.replace(tzinfo=UTC)
    return max((now - placed).total_seconds(), 0.0)


def alert_event(alert: Alert, source: str) -> CloudEvent:
    """The dev.ripple.shop.order.flagged event: same id and time whenever it is (re)built."""
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": alert.alert_id,
            "source": source,
            "type": ORDER_FLAGGED,
            "subject": alert.order_id,
            "time": alert.created_at.isoformat(),
            "datacontenttype": "application/json",
            "tenant": alert.tenant,
            "partitionkey": f"{alert.tenant}/{alert.order_id}",
        },
        {
            "orderId": alert.order_id,
            "amount": float(alert.amount),
            "currency": alert.currency,
            "threshold": float(alert.threshold),
            "reason": f"amount {alert.amount} above the threshold {alert.threshold}",
        },
    )
