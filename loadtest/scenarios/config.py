"""Settings of the scenarios and the Locust run, read from the environment in this one place.

| variable | default | what |
|---|---|---|
| RIPPLE_LOADTEST_TARGET | the local nginx (http://127.0.0.1:18080) | where the load goes |
| RIPPLE_LOADTEST_CLIENT_ID | ripple-publisher | Keycloak client (client credentials; tenant acme) |
| RIPPLE_LOADTEST_CLIENT_SECRET | RIPPLE_PUBLISHER_CLIENT_SECRET of .ripple/secrets.env | its secret |
| RIPPLE_LOADTEST_REPORTS | loadtest/reports | where report directories are written |
| RIPPLE_LOADTEST_RUN_ID | generated | Locust: tags the run's events (source /loadtest/<id>) |
| RIPPLE_LOADTEST_SHAPE | (none: Locust's -u/-r/-t) | Locust: `spike` = calm, spike, calm |
| RIPPLE_LOADTEST_CALM_USERS / _SPIKE_USERS | 5 / 40 | Locust spike shape: users in each stage |
| RIPPLE_LOADTEST_SHAPE_SECONDS | 120 | Locust spike shape: whole run (40 % calm, 20 % spike, 40 % calm) |
| RIPPLE_LOADTEST_BURSTS | 3 | bursts scenario: how many bursts |
| RIPPLE_LOADTEST_BURST_EVENTS | 45000 | bursts scenario: events in all bursts together |
| RIPPLE_LOADTEST_BURST_RATE | 300 | bursts scenario: events/s during a burst |
| RIPPLE_LOADTEST_BURST_BATCH | 20 | bursts scenario: events per request (CloudEvents batch) |

Addresses of Kafka, PostgreSQL, Keycloak and Flink come from the local stack's settings
(infra/local/ripple_stack/settings.py), so a port override there applies here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, Settings, load_settings

from .burstplan import BurstOptions

TENANT = "acme"  # the tenant claim of ripple-publisher's tokens
STORE_GROUP = "ripple-event-store"  # consumer group of knative/event-store/kafkasource.yaml
FLINK_GROUP = "ripple-aggregates"  # group the Flink job commits its offsets to on checkpoints
FLINK_JOB = "ripple-aggregates"
TOPICS = ("ripple.shop.orders", "ripple.shop.payments", "ripple.shop.pageviews")

# What the lag plots show, for the reports' captions. Committed offsets move in steps: the
# dispatcher commits every RIPPLE_DISPATCHER_COMMIT_INTERVAL_MS (1 s, the stack's setting; the
# Flink job at each 5 s checkpoint, RIPPLE_CHECKPOINT_INTERVAL), so up to that much traffic
# reads as lag while nothing waits. Sampled every second too, the two beat: at 1,008 events/s
# bench-latency's plot showed a sawtooth of ~1,000 records every ~70 s with the delay's p50 flat
# at 33 ms (traced 2026-12-05 per partition: every partition 0-1 s of its traffic behind).
LAG_MEANING = (
    "Lag is counted from committed offsets, which the dispatcher advances once a second and the "
    "Flink job at each 5 s checkpoint: up to that much traffic (event-store: about 1,000 records at "
    "1,000 events/s) shows as lag while nothing waits, and a slow sawtooth of that height is the "
    "probe's 1 s sampling beating against the commits; a backlog is what stays above it."
)


@dataclass(frozen=True)
class LoadConfig:
    stack: Settings
    target_url: str
    token_url: str
    client_id: str
    client_secret: str
    postgres_password: str
    reports_dir: Path

    @property
    def postgres_dsn(self) -> str:
        s = self.stack
        return (
            f"host={s.host} port={s.ports['postgres']} dbname={s.postgres_database} "
            f"user={s.postgres_user} password={self.postgres_password} connect_timeout=3"
        )


def load_config() -> LoadConfig:
    stack = load_settings()
    secrets = load_secrets(stack) if stack.secrets_file.exists() else {}
    client_id = os.environ.get("RIPPLE_LOADTEST_CLIENT_ID") or "ripple-publisher"
    secret = os.environ.get("RIPPLE_LOADTEST_CLIENT_SECRET") or secrets.get(
        "RIPPLE_PUBLISHER_CLIENT_SECRET", ""
    )
    if not secret:
        raise SystemExit(
            "loadtest: no client secret: run `make up` (it writes .ripple/secrets.env) "
            "or set RIPPLE_LOADTEST_CLIENT_SECRET."
        )
    return LoadConfig(
        stack=stack,
        target_url=os.environ.get("RIPPLE_LOADTEST_TARGET") or stack.nginx_url,
        token_url=f"{stack.keycloak_url}/realms/{stack.keycloak_realm}/protocol/openid-connect/token",
        client_id=client_id,
        client_secret=secret,
        postgres_password=secrets.get("RIPPLE_POSTGRES_PASSWORD", ""),
        reports_dir=Path(os.environ.get("RIPPLE_LOADTEST_REPORTS") or REPO_ROOT / "loadtest" / "reports"),
    )


@dataclass(frozen=True)
class ShapeConfig:
    """The Locust run's load shape (loadtest/locust/locustfile.py)."""

    shape: str
    calm_users: int
    spike_users: int
    seconds: float


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name) or ""
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"loadtest: {name}={raw!r} is not a number.") from None
    if value <= 0:
        raise SystemExit(f"loadtest: {name} must be positive.")
    return value


def load_shape_config() -> ShapeConfig:
    shape = (os.environ.get("RIPPLE_LOADTEST_SHAPE") or "").strip().lower()
    if shape not in ("", "spike"):
        raise SystemExit(f"loadtest: RIPPLE_LOADTEST_SHAPE={shape!r}: use `spike` or leave it empty.")
    return ShapeConfig(
        shape=shape,
        calm_users=int(_number("RIPPLE_LOADTEST_CALM_USERS", 5)),
        spike_users=int(_number("RIPPLE_LOADTEST_SPIKE_USERS", 40)),
        seconds=_number("RIPPLE_LOADTEST_SHAPE_SECONDS", 120),
    )


def load_burst_options() -> BurstOptions:
    """The bursts scenario's sizes from the environment (issue 19's run when unset)."""
    default = BurstOptions()
    return replace(
        default,
        bursts=int(_number("RIPPLE_LOADTEST_BURSTS", default.bursts)),
        events=int(_number("RIPPLE_LOADTEST_BURST_EVENTS", default.events)),
        rate=_number("RIPPLE_LOADTEST_BURST_RATE", default.rate),
        batch=int(_number("RIPPLE_LOADTEST_BURST_BATCH", default.batch)),
    )


def locust_run_id() -> str | None:
    return os.environ.get("RIPPLE_LOADTEST_RUN_ID") or None
