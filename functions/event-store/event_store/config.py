"""Every setting of the event-store function, read from the environment in this one place
(the database settings through ripple_consumer.database).

| variable | default | what |
|---|---|---|
| POSTGRES_* , DB_POOL_SIZE, DB_CONNECT_TIMEOUT_S | | the database: see ripple_consumer/database.py |
| DB_BATCH_MAX_ROWS | 500 | most events of concurrent deliveries written by one INSERT and one commit |
| DB_CONCURRENT_WRITES | 2 | such group writes under way at once (each holds one pooled connection) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ripple_consumer.database import ConfigError, DatabaseConfig, env_number

__all__ = ["Config", "ConfigError"]


@dataclass(frozen=True)
class Config(DatabaseConfig):
    batch_max_rows: int = 500
    concurrent_writes: int = 2

    MANIFEST = "knative/event-store/service.yaml"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        database = cls.database_from_env(env)
        config = cls(
            **{field.name: getattr(database, field.name) for field in fields(DatabaseConfig)},
            batch_max_rows=int(env_number(env, "DB_BATCH_MAX_ROWS", 500, minimum=1)),
            concurrent_writes=int(env_number(env, "DB_CONCURRENT_WRITES", 2, minimum=1)),
        )
        if config.concurrent_writes > config.pool_size:
            raise ConfigError(
                f"DB_CONCURRENT_WRITES={config.concurrent_writes} needs as many pooled connections: "
                f"raise DB_POOL_SIZE (now {config.pool_size}) or lower it."
            )
        return config
