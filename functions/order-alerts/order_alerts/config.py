"""Every setting of the order-alerts function, read from the environment in this one place.

| variable | default | what |
|---|---|---|
| ALERT_THRESHOLD | 1000 | an order whose amount is above this raises an alert |
| ALERT_TOPIC | ripple.shop.alerts | where dev.ripple.shop.order.flagged events go |
| ALERT_SOURCE | /ripple/order-alerts | CloudEvents source of the alerts |
| KAFKA_BOOTSTRAP_SERVERS | ripple-kafka-bootstrap.ripple.svc:9092 | comma-separated |
| KAFKA_ACK_TIMEOUT_S | 10 | an alert Kafka does not acknowledge in time fails the request (503, retried) |
| POSTGRES_ADDRESS | ripple-db-rw.ripple.svc:5432 | host:port of PostgreSQL |
| POSTGRES_DB / POSTGRES_USER | ripple / ripple | database and user |
| POSTGRES_PASSWORD | (required) | from the Secret key RIPPLE_POSTGRES_PASSWORD |
| DB_POOL_SIZE | 8 | connections kept open |
| DB_CONNECT_TIMEOUT_S | 5 | seconds before an unreachable PostgreSQL fails the request with 503 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number (default {default:g}).") from None
    if value < 0:
        raise ConfigError(f"{name}={raw} must not be negative.")
    return value


@dataclass(frozen=True)
class Config:
    threshold: float
    topic: str
    alert_source: str
    bootstrap_servers: tuple[str, ...]
    ack_timeout_s: float
    database_url: URL
    pool_size: int
    connect_timeout_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        password = env.get("POSTGRES_PASSWORD")
        if not password:
            raise ConfigError(
                "POSTGRES_PASSWORD is not set: give it from the Secret key RIPPLE_POSTGRES_PASSWORD "
                "(knative/order-alerts/service.yaml does)."
            )
        host, _, port = env.get("POSTGRES_ADDRESS", "ripple-db-rw.ripple.svc:5432").rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"POSTGRES_ADDRESS={env.get('POSTGRES_ADDRESS')!r} must be host:port.")
        servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "ripple-kafka-bootstrap.ripple.svc:9092")
        return cls(
            threshold=_number(env, "ALERT_THRESHOLD", 1000),
            topic=env.get("ALERT_TOPIC", "ripple.shop.alerts"),
            alert_source=env.get("ALERT_SOURCE", "/ripple/order-alerts"),
            bootstrap_servers=tuple(s.strip() for s in servers.split(",") if s.strip()),
            ack_timeout_s=_number(env, "KAFKA_ACK_TIMEOUT_S", 10),
            database_url=URL.create(
                "postgresql+psycopg2",
                username=env.get("POSTGRES_USER", "ripple"),
                password=password,
                host=host,
                port=int(port),
                database=env.get("POSTGRES_DB", "ripple"),
            ),
            pool_size=int(_number(env, "DB_POOL_SIZE", 8)) or 1,
            connect_timeout_s=int(_number(env, "DB_CONNECT_TIMEOUT_S", 5)) or 1,
        )
