"""Every setting of the event-store function: its database, read by ripple_consumer.database.

The variables (POSTGRES_ADDRESS, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD, DB_POOL_SIZE,
DB_CONNECT_TIMEOUT_S) and their defaults are listed in ripple_consumer/database.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from ripple_consumer.database import ConfigError, DatabaseConfig

__all__ = ["Config", "ConfigError"]


@dataclass(frozen=True)
class Config(DatabaseConfig):
    MANIFEST = "knative/event-store/service.yaml"
