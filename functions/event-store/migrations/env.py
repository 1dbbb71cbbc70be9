"""Alembic environment of event-store: see ripple_consumer.migrations (online, advisory lock)."""

from __future__ import annotations

from event_store.schema import metadata

from ripple_consumer.migrations import run_migrations

run_migrations("event-store", metadata, lock_key=0x72_69_70_70_01)
