"""Every setting of the order-alerts function, read from the environment in this one place
(the database settings through ripple_consumer.database).

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
from dataclasses import dataclass, fields

from ripple_consumer.database import ConfigError, DatabaseConfig, env_number

__all__ = ["Config", "ConfigError"]


@dataclass(frozen=True)
class Config(DatabaseConfig):
    threshold: float
    topic: str
    alert_source: str
    bootstrap_servers: tuple[str, ...]
    ack_timeout_s: float

    MANIFEST = "knative/order-alerts/service.yaml"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        database = cls.database_from_env(env)
        servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "ripple-kafka-bootstrap.ripple.svc:9092")
        return cls(
            **{field.name: getattr(database, field.name) for field in fields(DatabaseConfig)},
            threshold=env_number(env, "ALERT_THRESHOLD", 1000),
            topic=env.get("ALERT_TOPIC", "ripple.shop.alerts"),
            alert_source=env.get("ALERT_SOURCE", "/ripple/order-alerts"),
            bootstrap_servers=tuple(s.strip() for s in servers.split(",") if s.strip()),
            ack_timeout_s=env_number(env, "KAFKA_ACK_TIMEOUT_S", 10),
        )
