"""Alembic environment of dead-letters: online migrations only, serialised by an advisory lock.

Every dead-letters pod runs `alembic upgrade head` before serving (a no-op when up to date); the
PostgreSQL advisory lock makes concurrent cold starts wait for each other instead of racing.
"""

from __future__ import annotations

from alembic import context
from dead_letters.config import Config
from dead_letters.schema import metadata
from sqlalchemy import create_engine, text

# Own version table: several functions keep their migrations in the same database.
VERSION_TABLE = "alembic_version_dead_letters"
LOCK_KEY = 0x72_69_70_70_02  # "ripp" + 2: dead-letters's migration lock


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
    raise SystemExit("dead-letters migrations run online only: alembic upgrade head")
run_migrations_online()
