"""The order_alerts table: the function's own state, one row per (tenant, orderId)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, Numeric, PrimaryKeyConstraint, Table, Text, func

metadata = MetaData()

order_alerts = Table(
    "order_alerts",
    metadata,
    Column("tenant", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("trigger_source", Text, nullable=False),
    Column("trigger_id", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text),
    Column("threshold", Numeric, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set once Kafka acknowledged the alert: a redelivery before that re-emits the same alert id.
    Column("emitted_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant", "order_id", name="order_alerts_pkey"),
)
