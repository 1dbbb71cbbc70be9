"""Every setting of the query function, read from the environment here and nowhere else.

| variable | default | what |
|---|---|---|
| POSTGRES_ADDRESS | 127.0.0.1:15432 | PostgreSQL host:port |
| POSTGRES_DB | ripple | database holding Flink's aggregate tables |
| POSTGRES_USER | ripple | user (read access to the aggregate tables is enough) |
| POSTGRES_PASSWORD | (required) | its password, from a Secret |
| DATABASE_TIMEOUT_SECONDS | 3 | connect and statement timeout: a slow database answers 503, never hangs |
| QUERY_ROLE | aggregates.read | realm role a token needs |
| MAX_ROWS | 1000 | most rows one request returns (`limit` is capped to it) |
| RETRY_AFTER_SECONDS | 5 | Retry-After of a 503 |

Token settings (KEYCLOAK_URL, KEYCLOAK_REALM, TOKEN_ISSUER, TOKEN_AUDIENCE, ...) are those of
ripple_auth.TokenSettings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import URL

from ripple_auth import TokenSettings
from ripple_settings import ConfigError, env_int

__all__ = ["Config", "ConfigError", "load_config"]


@dataclass(frozen=True)
class Config:
    database_url: URL
    database_timeout_s: int
    role: str
    max_rows: int
    retry_after_s: int
    tokens: TokenSettings


def load_config() -> Config:
    password = os.environ.get("POSTGRES_PASSWORD")
    if not password:
        raise ConfigError("POSTGRES_PASSWORD is not set: give it the ripple database password (a Secret).")
    host, _, port = os.environ.get("POSTGRES_ADDRESS", "127.0.0.1:15432").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("POSTGRES_ADDRESS must be host:port, e.g. ripple-db-rw.ripple.svc:5432.")
    tokens = TokenSettings.from_environment()
    return Config(
        database_url=URL.create(
            "postgresql+psycopg2",
            username=os.environ.get("POSTGRES_USER", "ripple"),
            password=password,
            host=host,
            port=int(port),
            database=os.environ.get("POSTGRES_DB", "ripple"),
        ),
        database_timeout_s=env_int("DATABASE_TIMEOUT_SECONDS", 3, 1),
        role=os.environ.get("QUERY_ROLE", "aggregates.read"),
        max_rows=env_int("MAX_ROWS", 1000, 1),
        retry_after_s=env_int("RETRY_AFTER_SECONDS", 5, 1),
        tokens=tokens,
    )
