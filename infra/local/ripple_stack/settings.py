"""Every setting of the local stack, read from the environment in this one place.

Defaults are chosen so that nothing collides with a system service on its usual port: each
server listens on loopback on a port in the 15000-19999 range. Override any of them with the
variable named in the table (README.md lists the same table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from knative_standins import ConfigError as StandInConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]

# name -> (environment variable, default). Kept as data so README, status and tests share it.
PORTS: dict[str, tuple[str, int]] = {
    "kafka": ("RIPPLE_KAFKA_PORT", 19092),
    "kafka_controller": ("RIPPLE_KAFKA_CONTROLLER_PORT", 19093),
    "postgres": ("RIPPLE_POSTGRES_PORT", 15432),
    "keycloak": ("RIPPLE_KEYCLOAK_PORT", 18180),
    "keycloak_management": ("RIPPLE_KEYCLOAK_MANAGEMENT_PORT", 18190),
    "flink_rest": ("RIPPLE_FLINK_REST_PORT", 18281),
    "flink_rpc": ("RIPPLE_FLINK_RPC_PORT", 18282),
    "flink_jobmanager_metrics": ("RIPPLE_FLINK_JOBMANAGER_METRICS_PORT", 18283),
    "flink_taskmanager_metrics": ("RIPPLE_FLINK_TASKMANAGER_METRICS_PORT", 18284),
    "nginx": ("RIPPLE_NGINX_PORT", 18080),
    "nginx_status": ("RIPPLE_NGINX_STATUS_PORT", 18083),
    "nginx_exporter": ("RIPPLE_NGINX_EXPORTER_PORT", 19113),
    "nginx_log_exporter": ("RIPPLE_NGINX_LOG_EXPORTER_PORT", 19114),
    "gateway": ("RIPPLE_GATEWAY_PORT", 18081),
    "query": ("RIPPLE_QUERY_PORT", 18082),
    "prometheus": ("RIPPLE_PROMETHEUS_PORT", 19090),
    "pushgateway": ("RIPPLE_PUSHGATEWAY_PORT", 19091),
    # RabbitMQ (AMQP, Erlang distribution, rabbitmq_prometheus) and the notifications Broker.
    "rabbitmq": ("RIPPLE_RABBITMQ_PORT", 15772),
    "rabbitmq_dist": ("RIPPLE_RABBITMQ_DIST_PORT", 15773),
    "rabbitmq_prometheus": ("RIPPLE_RABBITMQ_PROMETHEUS_PORT", 15774),
    "broker_ingress": ("RIPPLE_BROKER_INGRESS_PORT", 18600),
    "trigger_dispatchers": ("RIPPLE_TRIGGER_DISPATCHER_PORT", 18610),
    "mail_sink": ("RIPPLE_MAIL_SINK_PORT", 18025),
    "mail_sink_metrics": ("RIPPLE_MAIL_SINK_METRICS_PORT", 18026),
    # Functions pinned to a port so that adding a function (name order) moves no other one.
    "order-alerts": ("RIPPLE_ORDER_ALERTS_PORT", 18403),
    "notifier": ("RIPPLE_NOTIFIER_PORT", 18405),
    # Serving (scale to zero): each function's activator serves /metrics and /status on
    # serving_admin + its index; its instances listen on serving_instances + 32 x index + n.
    "serving_admin": ("RIPPLE_SERVING_ADMIN_PORT", 18700),
    "serving_instances": ("RIPPLE_SERVING_INSTANCE_PORT", 18720),
    # The local dashboard page (ripple_dashboard): the Grafana dashboard JSON drawn live.
    "dashboard": ("RIPPLE_DASHBOARD_PORT", 19300),
}

# Secrets the stack needs. Taken from the environment when set; otherwise generated once
# into $RIPPLE_HOME/secrets.env (mode 0600) so that nothing secret is ever committed.
SECRET_NAMES: tuple[str, ...] = (
    "RIPPLE_POSTGRES_PASSWORD",
    "RIPPLE_KEYCLOAK_ADMIN_PASSWORD",
    "RIPPLE_PUBLISHER_CLIENT_SECRET",
    "RIPPLE_TEST_CLIENT_SECRET",
    "RIPPLE_TEST_USER_PASSWORD",
    "RIPPLE_RABBITMQ_PASSWORD",
)


# One error type for a setting or manifest that cannot be used, whether the runner or a stand-in
# it starts reads it; the message says which and what to do.
ConfigError = StandInConfigError


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a port number: set it to 1024-65535.") from None
    if not 1024 <= value <= 65535:
        raise ConfigError(f"{variable}={value} is out of range: set it to 1024-65535.")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    ports: dict[str, int]
    host: str = "127.0.0.1"
    ready_timeout_s: float = 180.0
    postgres_user: str = "ripple"
    postgres_database: str = "ripple"
    keycloak_realm: str = "ripple"
    rabbitmq_user: str = "ripple"

    # Directories under RIPPLE_HOME. "dist" holds what was downloaded and survives `make clean`.
    @property
    def dist_dir(self) -> Path:
        return self.home / "dist"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.env"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.ports['kafka']}"

    @property
    def keycloak_url(self) -> str:
        return f"http://{self.host}:{self.ports['keycloak']}"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.host}:{self.ports['flink_rest']}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.ports['gateway']}"

    @property
    def nginx_url(self) -> str:
        return f"http://{self.host}:{self.ports['nginx']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.ports['prometheus']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.ports['dashboard']}"

    @property
    def pushgateway_url(self) -> str:
        return f"http://{self.host}:{self.ports['pushgateway']}"

    def amqp_url(self, password: str) -> str:
        return f"amqp://{self.rabbitmq_user}:{password}@{self.host}:{self.ports['rabbitmq']}/%2F"

    @property
    def mail_dir(self) -> Path:
        """Where the local mail sink writes every message it receives (one .eml file each)."""
        return self.home / "mail"

    def postgres_url(self, password: str, driver: str = "postgresql+psycopg2") -> str:
        return (
            f"{driver}://{self.postgres_user}:{password}@{self.host}:{self.ports['postgres']}"
            f"/{self.postgres_database}"
        )

    def cluster_address_map(self) -> dict[str, str]:
        """In-cluster service addresses used in knative/ and infra/ -> their local equivalents.

        The manifests name the services a cluster has; locally the same strings are rewritten
        to the loopback ports of this stack, so the manifests stay the single source of truth.
        """
        local = self.host
        return {
            "ripple-kafka-bootstrap.ripple.svc:9092": self.kafka_bootstrap,
            "keycloak-service.ripple.svc:8080": f"{local}:{self.ports['keycloak']}",
            "ripple-db-rw.ripple.svc:5432": f"{local}:{self.ports['postgres']}",
            "pushgateway.ripple.svc:9091": f"{local}:{self.ports['pushgateway']}",
            "ripple-flink-rest.ripple.svc:8081": f"{local}:{self.ports['flink_rest']}",
            "gateway.ripple.svc:80": f"{local}:{self.ports['gateway']}",
            "ripple-rabbitmq.ripple.svc:5672": f"{local}:{self.ports['rabbitmq']}",
            "notifications-broker-ingress.ripple.svc:80": f"{local}:{self.ports['broker_ingress']}",
            "smtp.ripple.svc:25": f"{local}:{self.ports['mail_sink']}",
        }


def load_settings() -> Settings:
    home = Path(os.environ.get("RIPPLE_HOME") or REPO_ROOT / ".ripple").resolve()
    ports = {name: _port(variable, default) for name, (variable, default) in PORTS.items()}
    clashes = {p for p in ports.values() if list(ports.values()).count(p) > 1}
    if clashes:
        raise ConfigError(f"Ports {sorted(clashes)} are configured twice: give each a distinct value.")
    try:
        timeout = float(os.environ.get("RIPPLE_READY_TIMEOUT", "180"))
    except ValueError:
        raise ConfigError("RIPPLE_READY_TIMEOUT must be a number of seconds, e.g. 180.") from None
    return Settings(home=home, ports=ports, ready_timeout_s=timeout)
