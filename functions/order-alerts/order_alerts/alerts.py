"""The decision (is this order an alert?), the idempotent state, and the alert event.

The statements are built once, with bound parameters, so SQLAlchemy compiles each once: built per
call, the alert row's INSERT ... ON CONFLICT DO NOTHING RETURNING was compiled at every alert
(SQLAlchemy has no cache key for its ON CONFLICT construct) and, with the UPDATE built per call,
cost ~1 ms of CPU of the ~5.5 ms a flagged order took (issue 19, loadtest/broker/alert_cpu.py).
The alert event is built as its wire form (AlertMessage) rather than as an SDK CloudEvent that the
SDK's Kafka and HTTP conversions then took apart again (order_alerts/emit.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Connection, bindparam, func, select, text, update

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


# The alert row, created once per (tenant, orderId). Written as SQL because SQLAlchemy 2.0 cannot
# cache insert().on_conflict_do_nothing() (it compiles it at every execution, even built once);
# tests/test_order_alerts_alerts.py checks it names the table's columns. Any unique conflict (the
# key, or the alert id) returns nothing, as the construct's ON CONFLICT DO NOTHING did.
RECORD = text(
    "INSERT INTO order_alerts"
    " (tenant, order_id, alert_id, trigger_source, trigger_id, amount, currency, threshold)"
    " VALUES (:tenant, :order_id, :alert_id, :trigger_source, :trigger_id, :amount, :currency, :threshold)"
    " ON CONFLICT DO NOTHING"
    " RETURNING tenant, order_id, alert_id, amount, currency, threshold, created_at, emitted_at"
)
_KEY = (
    order_alerts.c.tenant == bindparam("key_tenant"),
    order_alerts.c.order_id == bindparam("key_order_id"),
)
# A redelivery's row (the INSERT returned nothing: it was there).
STORED = select(order_alerts).where(*_KEY)
MARK_EMITTED = update(order_alerts).where(*_KEY).values(emitted_at=func.now())


def record_alert(connection: Connection, event: AnyCloudEvent, threshold: float) -> Alert | None:
    """The alert for this order (created once per tenant/order), or None below the threshold.

    In a transaction of its own on `connection` (which the caller keeps for mark_emitted).
    """
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
    with connection.begin():
        # A new alert comes back from the INSERT itself; only a redelivery (the row was there)
        # needs the second round trip to read the stored one.
        stored = connection.execute(RECORD, row).one_or_none()
        if stored is None:
            stored = connection.execute(STORED, {"key_tenant": tenant, "key_order_id": order_id}).one()
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


def mark_emitted(connection: Connection, alert: Alert) -> None:
    """The alert was confirmed by Kafka and the Broker: a redelivery now emits nothing."""
    with connection.begin():
        connection.execute(MARK_EMITTED, {"key_tenant": alert.tenant, "key_order_id": alert.order_id})


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


@dataclass(frozen=True)
class AlertMessage:
    """The dev.ripple.shop.order.flagged event as it travels: what order_alerts/emit.py writes to the
    Kafka record and the Broker's request, each in its binding (binary mode)."""

    # Every attribute, datacontenttype and the partitionkey extension included, as strings.
    attributes: dict[str, str]
    data: dict[str, Any]
    # The data as the SDK's conversions marshal it (json.dumps, UTF-8): one body for both.
    body: bytes
    # The Kafka record key: the partitionkey.
    key: bytes


def alert_message(alert: Alert, source: str) -> AlertMessage:
    """The dev.ripple.shop.order.flagged event: same id and time whenever it is (re)built."""
    partition_key = f"{alert.tenant}/{alert.order_id}"
    data = {
        "orderId": alert.order_id,
        "amount": float(alert.amount),
        "currency": alert.currency,
        "threshold": float(alert.threshold),
        "reason": f"amount {alert.amount} above the threshold {alert.threshold}",
    }
    attributes = {
        "specversion": "1.0",
        "id": alert.alert_id,
        "source": source,
        "type": ORDER_FLAGGED,
        "subject": alert.order_id,
        "time": alert.created_at.isoformat(),
        "datacontenttype": "application/json",
        "tenant": alert.tenant,
        "partitionkey": partition_key,
    }
    return AlertMessage(attributes, data, json.dumps(data).encode(), partition_key.encode())
