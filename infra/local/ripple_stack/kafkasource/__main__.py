"""Run one KafkaSource dispatcher: `python -m ripple_stack.kafkasource knative/<c>/kafkasource.yaml`.

Settings (read here only):
  --metrics-port / RIPPLE_DISPATCHER_METRICS_PORT   Prometheus metrics port (default 18500)
  RIPPLE_DISPATCHER_HOST                            address the metrics port binds (127.0.0.1)
  RIPPLE_DISPATCHER_MAX_IN_FLIGHT                   bound on outstanding records (default 100)
  RIPPLE_DISPATCHER_COMMIT_INTERVAL_MS              how often done offsets are committed (1000)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from prometheus_client import start_http_server

from ..settings import ConfigError, load_settings
from .dispatcher import Dispatcher, DispatcherConfig
from .manifest import ManifestError, load
from .metrics import DispatcherMetrics
from .resolve import bootstrap_servers, destination_url, service_urls


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number: set it to {minimum} or more.") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small: set it to {minimum} or more.")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ripple_stack.kafkasource", description=__doc__)
    parser.add_argument("manifest", type=Path, help="a sources.knative.dev/v1beta1 KafkaSource YAML file")
    parser.add_argument("--metrics-port", type=int, default=None)
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load_settings()
        source = load(arguments.manifest)
        services = service_urls(settings)
        delivery = source.delivery
        config = DispatcherConfig(
            source=source,
            sink_url=destination_url(source.sink, source, "spec.sink", settings, services),
            dead_letter_url=(
                destination_url(
                    delivery.dead_letter_sink, source, "spec.delivery.deadLetterSink", settings, services
                )
                if delivery.dead_letter_sink
                else None
            ),
            bootstrap_servers=bootstrap_servers(source, settings),
            max_in_flight=_int_env("RIPPLE_DISPATCHER_MAX_IN_FLIGHT", 100, 1),
            commit_interval_s=_int_env("RIPPLE_DISPATCHER_COMMIT_INTERVAL_MS", 1000, 10) / 1000,
        )
        port = arguments.metrics_port or _int_env("RIPPLE_DISPATCHER_METRICS_PORT", 18500, 1024)
        host = os.environ.get("RIPPLE_DISPATCHER_HOST", settings.host)
    except (ManifestError, ConfigError) as error:
        print(f"ripple kafkasource: {error}", file=sys.stderr)
        return 2
    metrics = DispatcherMetrics()
    start_http_server(port, addr=host, registry=metrics.registry)
    Dispatcher(config, metrics).run()  # until SIGTERM or SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
