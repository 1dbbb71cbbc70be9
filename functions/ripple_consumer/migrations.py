"""The Alembic environment of a consumer function: online only, serialised by an advisory lock.

Every pod runs `alembic upgrade head` before serving (a no-op when up to date); the PostgreSQL
advisory lock makes concurrent cold starts wait for each other instead of racing. Each function
keeps its own version table: several functions keep their migrations in the same database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, create_engine, text

from .database import DatabaseConfig


def run_migrations(function: str, metadata: MetaData, lock_key: int) -> None:
    """Call from a function's migrations/env.py."""
    if context.is_offline_mode():
        raise SystemExit(f"{function} migrations run online only: alembic upgrade head")
    version_table = "alembic_version_" + function.replace("-", "_")
    engine = create_engine(DatabaseConfig.database_from_env().database_url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key})
        try:
            context.configure(connection=connection, target_metadata=metadata, version_table=version_table)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
            connection.commit()
    engine.dispose()
