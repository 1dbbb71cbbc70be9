"""The events table (its DDL lives in the Alembic migrations; this is what the code writes)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("subject", Text),
    Column("tenant", Text),
    Column("time", DateTime(timezone=True)),
    Column("data", JSONB),
    Column("extensions", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The identity of a CloudEvent: a redelivery hits this key and is a no-op.
    PrimaryKeyConstraint("source", "id", name="events_pkey"),
)
