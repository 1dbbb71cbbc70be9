"""Alembic environment of order-alerts: see ripple_consumer.migrations (online, advisory lock)."""

from __future__ import annotations

from order_alerts.schema import metadata

from ripple_consumer.migrations import run_migrations

run_migrations("order-alerts", metadata, lock_key=0x72_69_70_70_03)
