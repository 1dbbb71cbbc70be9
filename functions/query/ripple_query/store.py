"""Reads of Flink's aggregate tables. Every query is bound to one tenant: there is no other way in.

The tables are written by the Flink job and defined in flink/sql/postgres-schema.sql: this
module only reads them, so they are mirrored here as lightweight table clauses. Their times are
UTC without a zone; they are compared and answered as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import Config

PER_MINUTE = sa.table(
    "agg_events_per_minute",
    sa.column("tenant"),
    sa.column("event_type"),
    sa.column("window_start"),
    sa.column("window_end"),
    sa.column("events"),
    sa.column("amount_sum"),
)
PRODUCT_SALES = sa.table(
    "agg_product_sales",
    sa.column("tenant"),
    sa.column("sku"),
    sa.column("revenue"),
    sa.column("quantity"),
    sa.column("order_lines"),
)
TENANT_TOTALS = sa.table(
    "agg_tenant_totals",
    sa.column("tenant"),
    sa.column("orders"),
    sa.column("order_amount"),
    sa.column("payments"),
    sa.column("payment_amount"),
    sa.column("pageviews"),
)


def create_engine(config: Config) -> Engine:
    timeout_ms = config.database_timeout_s * 1000
    return sa.create_engine(
        config.database_url,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=config.database_timeout_s,
        connect_args={
            "connect_timeout": config.database_timeout_s,
            # A slow database must not hold a request: the statement is cancelled server side.
            "options": f"-c statement_timeout={timeout_ms}",
            "application_name": "ripple-query",
        },
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return float(value)  # Decimal sums: JSON numbers


def _rows(engine: Engine, statement: sa.Select) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execute(statement)
        return [{key: _json_value(value) for key, value in row._mapping.items()} for row in result]


def per_minute(
    engine: Engine,
    tenant: str,
    *,
    event_type: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    table = PER_MINUTE
    statement = (
        sa.select(
            table.c.event_type, table.c.window_start, table.c.window_end, table.c.events, table.c.amount_sum
        )
        .where(table.c.tenant == tenant)
        .order_by(table.c.window_start.desc(), table.c.event_type)
        .limit(limit)
    )
    if event_type:
        statement = statement.where(table.c.event_type == event_type)
    if since:
        statement = statement.where(table.c.window_start >= _utc(since))
    if until:
        statement = statement.where(table.c.window_start < _utc(until))
    return _rows(engine, statement)


def products(engine: Engine, tenant: str, *, sku: str | None, limit: int) -> list[dict[str, Any]]:
    table = PRODUCT_SALES
    statement = (
        sa.select(table.c.sku, table.c.revenue, table.c.quantity, table.c.order_lines)
        .where(table.c.tenant == tenant)
        .order_by(table.c.revenue.desc(), table.c.sku)
        .limit(limit)
    )
    if sku:
        statement = statement.where(table.c.sku == sku)
    return _rows(engine, statement)


def totals(engine: Engine, tenant: str) -> dict[str, Any] | None:
    table = TENANT_TOTALS
    statement = sa.select(
        table.c.orders, table.c.order_amount, table.c.payments, table.c.payment_amount, table.c.pageviews
    ).where(table.c.tenant == tenant)
    rows = _rows(engine, statement)
    return rows[0] if rows else None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
