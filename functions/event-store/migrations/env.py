"""Alembic environment of event-store: online migrations only, serialised by an advisory lock.

Every event-store pod runs `alembic upgrade head` before serving (a no-op when up to date); the
PostgreSQL advisory lock makes concurrent cold starts wait for each other instead of racing.
"""

from __future__ import annotations

from alembic import context
from event_store.config import Config
from event_store.schema import metadata
from sqlalchemy import create_engine, text

# Own version table: several functions keep their migrations in the same database.
VERSION_TABLE = "alembic_version_event_store"
LOCK_KEY = 0x72_69_70_70_01  # "ripp" + 1: event-store's migration lock


def run_migrations_online() -> None:
    engine = create_engine(Config.from_env().database_url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        try:
            context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("event-store migrations run online only: alembic upgrade head")
run_migrations_online()
