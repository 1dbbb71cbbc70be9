"""Every setting of the gateway, read from the environment here and nowhere else.

| variable | default | what |
|---|---|---|
| KAFKA_BOOTSTRAP_SERVERS | 127.0.0.1:19092 | Kafka bootstrap servers, comma separated |
| MAX_BODY_BYTES | 1048576 | largest request body (413 above) |
| MAX_BATCH_EVENTS | 500 | most events in one batch (413 above) |
| KAFKA_LINGER_MS | 5 | producer linger: batches records of concurrent requests |
| KAFKA_BATCH_BYTES | 131072 | producer batch size per partition |
| KAFKA_MAX_RECORD_BYTES | 1048576 | largest Kafka record, attributes included (413 above) |
| KAFKA_REQUEST_TIMEOUT_MS | 3000 | produce request timeout |
| KAFKA_DELIVERY_TIMEOUT_MS | 5000 | a record not acknowledged by then fails (-> 503) |
| RETRY_AFTER_SECONDS | 5 | Retry-After of a 503 |
| PROMETHEUS_MULTIPROC_DIR | (unset) | read by prometheus-client; only for several worker processes |
| GC_GEN0_THRESHOLD | 10000 | net allocations between young-generation collections (0: Python's 700) |
| KAFKA_TOPIC_PREFIX | (empty) | before every topic produced to; only benchmarks set it (bench.<run>.) |

The server's settings (PORT, SERVER_LOG_LEVEL, KEEP_ALIVE_S) are read by ripple_server: one process
per instance, more instances from Knative's autoscaler.

Token settings (KEYCLOAK_URL, KEYCLOAK_REALM, TOKEN_ISSUER, TOKEN_AUDIENCE, TOKEN_ALGORITHMS,
TOKEN_LEEWAY_SECONDS, TENANT_CLAIM, TOKEN_CACHE_SIZE, JWKS_REFRESH_MIN_SECONDS,
KEYCLOAK_TIMEOUT_SECONDS) are read by ripple_auth.TokenSettings, shared with the query function.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ripple_auth import TokenSettings
from ripple_settings import ConfigError, env_int

__all__ = ["Config", "ConfigError", "load_config"]

# Kafka's legal topic characters; the catalog's topic names are appended to the prefix.
TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,200}")


@dataclass(frozen=True)
class Config:
    kafka_bootstrap_servers: list[str]
    tokens: TokenSettings
    max_body_bytes: int
    max_batch_events: int
    kafka_linger_ms: int
    kafka_batch_bytes: int
    kafka_max_record_bytes: int
    kafka_request_timeout_ms: int
    kafka_delivery_timeout_ms: int
    retry_after_s: int
    # Benchmarks run a private gateway with their own prefix, so that their events never reach
    # the topics the stack's consumers and Flink read (issue 22).
    kafka_topic_prefix: str = ""
    # The garbage collector's young-generation threshold (app._tune_gc); 0 keeps Python's.
    gc_gen0_threshold: int = 10000


def load_config() -> Config:
    tokens = TokenSettings.from_environment()
    request_timeout = env_int("KAFKA_REQUEST_TIMEOUT_MS", 3000, 100)
    linger = env_int("KAFKA_LINGER_MS", 5)
    delivery_timeout = env_int("KAFKA_DELIVERY_TIMEOUT_MS", 5000, 100)
    if delivery_timeout < request_timeout + linger:
        # Kafka's own rule: a record must be allowed at least one full request after lingering.
        raise ConfigError(
            "KAFKA_DELIVERY_TIMEOUT_MS must be >= KAFKA_REQUEST_TIMEOUT_MS + KAFKA_LINGER_MS "
            f"({request_timeout + linger}): raise it or lower the others."
        )
    prefix = os.environ.get("KAFKA_TOPIC_PREFIX", "")
    if not TOPIC_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"KAFKA_TOPIC_PREFIX={prefix!r} is not a topic prefix: use at most 200 of A-Z a-z 0-9 . _ - "
            "(e.g. bench.run1.), or leave it empty."
        )
    servers = [s.strip() for s in os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092").split(",")]
    return Config(
        kafka_bootstrap_servers=[s for s in servers if s],
        tokens=tokens,
        max_body_bytes=env_int("MAX_BODY_BYTES", 1048576, 1024),
        max_batch_events=env_int("MAX_BATCH_EVENTS", 500, 1),
        kafka_linger_ms=linger,
        kafka_batch_bytes=env_int("KAFKA_BATCH_BYTES", 131072, 1024),
        kafka_max_record_bytes=env_int("KAFKA_MAX_RECORD_BYTES", 1048576, 1024),
        kafka_request_timeout_ms=request_timeout,
        kafka_delivery_timeout_ms=delivery_timeout,
        retry_after_s=env_int("RETRY_AFTER_SECONDS", 5, 1),
        kafka_topic_prefix=prefix,
        gc_gen0_threshold=env_int("GC_GEN0_THRESHOLD", 10000),
    )
