"""The notifications table: one row per flagged order e-mailed, keyed on the event's (source, id)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, func

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("source", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("tenant", Text),
    Column("order_id", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("source", "id", name="notifications_pkey"),
)
