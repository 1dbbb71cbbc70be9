"""Every setting of the dead-letters function, read from the environment in this one place.

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
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a whole number (default {default}).") from None
    if value < 1:
        raise ConfigError(f"{name}={value} must be at least 1.")
    return value


@dataclass(frozen=True)
class Config:
    database_url: URL
    pool_size: int
    connect_timeout_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        password = env.get("POSTGRES_PASSWORD")
        if not password:
            raise ConfigError(
                "POSTGRES_PASSWORD is not set: give it from the Secret key RIPPLE_POSTGRES_PASSWORD "
                "(knative/dead-letters/service.yaml does)."
            )
        host, _, port = env.get("POSTGRES_ADDRESS", "ripple-db-rw.ripple.svc:5432").rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"POSTGRES_ADDRESS={env.get('POSTGRES_ADDRESS')!r} must be host:port.")
        return cls(
            database_url=URL.create(
                "postgresql+psycopg2",
                username=env.get("POSTGRES_USER", "ripple"),
                password=password,
                host=host,
                port=int(port),
                database=env.get("POSTGRES_DB", "ripple"),
            ),
            pool_size=_int(env, "DB_POOL_SIZE", 8),
            connect_timeout_s=_int(env, "DB_CONNECT_TIMEOUT_S", 5),
        )
