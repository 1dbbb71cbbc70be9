"""PostgreSQL settings of a consumer function, read from the environment, and its engine.

| variable | default | what |
|---|---|---|
| POSTGRES_ADDRESS | ripple-db-rw.ripple.svc:5432 | host:port of PostgreSQL |
| POSTGRES_DB | ripple | database |
| POSTGRES_USER | ripple | user |
| POSTGRES_PASSWORD | (required) | from the Secret key RIPPLE_POSTGRES_PASSWORD |
| DB_POOL_SIZE | 8 | connections kept open (gunicorn runs 4 threads per core) |
| DB_CONNECT_TIMEOUT_S | 5 | a PostgreSQL that does not answer fails the request with 503 |
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL

from ripple_settings import ConfigError, env_number

from .current_schema import postgres_settings

__all__ = ["MAX_OVERFLOW", "ConfigError", "DatabaseConfig", "env_number", "make_engine"]

# Connections opened beyond DB_POOL_SIZE when every pooled one is taken (closed when returned).
MAX_OVERFLOW = 2


@dataclass(frozen=True)
class DatabaseConfig:
    database_url: URL
    pool_size: int
    connect_timeout_s: int

    # The manifest that sets these variables, named in error messages (subclasses set it).
    MANIFEST: ClassVar[str] = "the function's knative/<name>/service.yaml"

    @classmethod
    def database_from_env(cls, env: Mapping[str, str] = os.environ) -> DatabaseConfig:
        # Read where the cold start's schema check (without SQLAlchemy) reads them too.
        postgres = postgres_settings(env, cls.MANIFEST)
        return DatabaseConfig(
            database_url=URL.create(
                "postgresql+psycopg2",
                username=postgres.user,
                password=postgres.password,
                host=postgres.host,
                port=postgres.port,
                database=postgres.database,
            ),
            pool_size=int(env_number(env, "DB_POOL_SIZE", 8, minimum=1)),
            connect_timeout_s=int(env_number(env, "DB_CONNECT_TIMEOUT_S", 5, minimum=1)),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """The settings of a function that needs nothing but its database."""
        database = cls.database_from_env(env)
        return cls(database.database_url, database.pool_size, database.connect_timeout_s)


def make_engine(config: DatabaseConfig) -> Engine:
    return create_engine(
        config.database_url,
        pool_size=config.pool_size,
        max_overflow=MAX_OVERFLOW,
        # After a PostgreSQL restart the pooled connections are dead: check before use.
        pool_pre_ping=True,
        pool_timeout=config.connect_timeout_s,
        connect_args={"connect_timeout": config.connect_timeout_s},
    )


class LazyEngine:
    """The function's engine, created on first use in the serving worker.

    functions-framework's gunicorn imports the function module before it forks: an engine made at
    import would share its pooled connections between processes.
    """

    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self._config)
            return self._engine
