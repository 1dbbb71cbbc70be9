"""Alembic environment of notifier: see ripple_consumer.migrations (online, advisory lock)."""

from __future__ import annotations

from notifier.schema import metadata

from ripple_consumer.migrations import run_migrations

run_migrations("notifier", metadata, lock_key=0x72_69_70_70_06)
