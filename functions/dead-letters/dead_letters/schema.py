"""The dead_letters table (DDL in the Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, LargeBinary, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("subject", Text),
    Column("tenant", Text),
    Column("time", Text),
    Column("datacontenttype", Text),
    # The data exactly as it was delivered: it may be what made the sink fail.
    Column("data", LargeBinary),
    Column("extensions", JSONB, nullable=False),
    Column("error_dest", Text, nullable=False),
    Column("error_code", Text),
    Column("error_data", Text),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_at", DateTime(timezone=True)),
)
