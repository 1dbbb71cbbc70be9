"""Alembic environment of order-alerts: online migrations only, serialised by an advisory lock.

Every order-alerts pod runs `alembic upgrade head` before serving (a no-op when up to date); the
PostgreSQL advisory lock makes concurrent cold starts wait for each other instead of racing.
"""

from __future__ import annotations

from alembic import context
from order_alerts.config import Config
from order_alerts.schema import metadata
from sqlalchemy import create_engine, text

# Own version table: several functions keep their migrations in the same database.
VERSION_TABLE = "alembic_version_order_alerts"
LOCK_KEY = 0x72_69_70_70_03  # "ripp" + 3: order-alerts's migration lock


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
    raise SystemExit("order-alerts migrations run online only: alembic upgrade head")
run_migrations_online()
