"""Run one KafkaSource dispatcher: `python -m knative_standins.kafkasource knative/<c>/kafkasource.yaml`.

Settings (read here only):
  --metrics-port / RIPPLE_DISPATCHER_METRICS_PORT   Prometheus metrics port (default 18500)
  RIPPLE_DISPATCHER_HOST                            address the metrics port binds (127.0.0.1)
  RIPPLE_DISPATCHER_MAX_IN_FLIGHT                   bound on outstanding records (default 100)
  RIPPLE_DISPATCHER_COMMIT_INTERVAL_MS              how often done offsets are committed (1000)
  RIPPLE_DISPATCHER_SESSION_TIMEOUT_MS              the consumer group's session (10000, upstream's)
  RIPPLE_DISPATCHER_ASSIGNMENT                      all (default: every partition, this process) or
                                                    group (subscribe as a member of consumerGroup)
  RIPPLE_KNATIVE_SERVICES, RIPPLE_CLUSTER_ADDRESSES where sinks and Kafka are (delivery/addresses.py)
  K_SINK                                            the sink's URL, when a cluster's SinkBinding or
                                                    ContainerSource resolved spec.sink (Knative's source
                                                    contract); it then wins over RIPPLE_KNATIVE_SERVICES
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import start_http_server

from .. import ConfigError
from ..delivery.addresses import Addresses
from ..env import whole_number
from .dispatcher import Dispatcher, DispatcherConfig
from .manifest import load
from .metrics import DispatcherMetrics


def assignment_mode(env: Mapping[str, str]) -> str:
    """RIPPLE_DISPATCHER_ASSIGNMENT: "all" (default) or "group"."""
    mode = env.get("RIPPLE_DISPATCHER_ASSIGNMENT", "all").strip() or "all"
    if mode not in ("all", "group"):
        raise ConfigError(
            f"RIPPLE_DISPATCHER_ASSIGNMENT={mode!r}: set it to all (one dispatcher per KafkaSource) "
            "or group (members of consumerGroup, e.g. a rolling Deployment)"
        )
    return mode


def dispatcher_config(manifest: Path, env: Mapping[str, str] = os.environ) -> DispatcherConfig:
    """The dispatcher's configuration from a KafkaSource manifest and the environment.

    The sink is ``K_SINK`` when a cluster's SinkBinding or ContainerSource set it (Knative's
    source contract: the address Eventing resolved from ``spec.sink``), otherwise the local
    address of the Knative Service ``spec.sink`` names (``RIPPLE_KNATIVE_SERVICES``)."""
    addresses = Addresses.from_env(env)
    source = load(manifest)
    delivery = source.delivery
    return DispatcherConfig(
        source=source,
        sink_url=env.get("K_SINK") or addresses.url(source.sink, f"{source.path}: spec.sink"),
        dead_letter_url=(
            addresses.url(delivery.dead_letter_sink, f"{source.path}: spec.delivery.deadLetterSink")
            if delivery.dead_letter_sink
            else None
        ),
        bootstrap_servers=tuple(addresses.rewrite(server) for server in source.bootstrap_servers),
        max_in_flight=whole_number("RIPPLE_DISPATCHER_MAX_IN_FLIGHT", 100, 1, env),
        commit_interval_s=whole_number("RIPPLE_DISPATCHER_COMMIT_INTERVAL_MS", 1000, 10, env) / 1000,
        session_timeout_ms=whole_number("RIPPLE_DISPATCHER_SESSION_TIMEOUT_MS", 10_000, 6000, env),
        assignment=assignment_mode(env),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knative_standins.kafkasource", description=__doc__)
    parser.add_argument("manifest", type=Path, help="a sources.knative.dev/v1beta1 KafkaSource YAML file")
    parser.add_argument("--metrics-port", type=int, default=None)
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        config = dispatcher_config(arguments.manifest)
        port = arguments.metrics_port or whole_number("RIPPLE_DISPATCHER_METRICS_PORT", 18500, 1024)
        host = os.environ.get("RIPPLE_DISPATCHER_HOST", "127.0.0.1")
    except ConfigError as error:
        print(f"ripple kafkasource: {error}", file=sys.stderr)
        return 2
    metrics = DispatcherMetrics()
    start_http_server(port, addr=host, registry=metrics.registry)
    Dispatcher(config, metrics).run()  # until SIGTERM or SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
