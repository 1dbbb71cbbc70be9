"""Every setting of the dead-letters function: its database, read by ripple_consumer.database.

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

from dataclasses import dataclass

from ripple_consumer.database import ConfigError, DatabaseConfig

__all__ = ["Config", "ConfigError"]


@dataclass(frozen=True)
class Config(DatabaseConfig):
    MANIFEST = "knative/dead-letters/service.yaml"
