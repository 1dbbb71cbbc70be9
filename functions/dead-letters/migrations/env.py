"""Alembic environment of dead-letters: see ripple_consumer.migrations (online, advisory lock)."""

from __future__ import annotations

from dead_letters.schema import metadata

from ripple_consumer.migrations import run_migrations

run_migrations("dead-letters", metadata, lock_key=0x72_69_70_70_02)
