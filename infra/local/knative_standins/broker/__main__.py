"""Run one piece of a Broker's data plane: `ingress <broker>` or `dispatch <broker> <trigger>`.

  python -m knative_standins.broker ingress notifications --port 18600
  python -m knative_standins.broker dispatch notifications notifier --metrics-port 18610

The manifests are read from --manifests (a folder of <name>/*.yaml: knative/, or another for
benchmarks). Settings (environment; the stack runner's components/brokers.py sets them and starts
one of each under supervisord):
  RIPPLE_BROKER_AMQP_URL                            RabbitMQ, with its credentials (required)
  RIPPLE_BROKER_HOST                                address the ports bind (127.0.0.1)
  RIPPLE_KNATIVE_SERVICES, RIPPLE_CLUSTER_ADDRESSES where subscribers are (delivery/addresses.py)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from .. import ConfigError
from ..delivery.addresses import Addresses
from ..env import required
from .dispatcher import TriggerDispatcher
from .ingress import Ingress, serve
from .manifest import ManifestError, Notifications, knative_manifests, load_all
from .metrics import DispatcherMetrics


def find(name: str, directory: Path) -> Notifications:
    for notifications in load_all(knative_manifests(directory)):
        if notifications.broker.name == name:
            return notifications
    raise ManifestError(f"there is no RabbitMQBroker {name!r} in {directory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m knative_standins.broker", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingress_command = commands.add_parser("ingress")
    ingress_command.add_argument("broker")
    ingress_command.add_argument("--manifests", type=Path, required=True, help="e.g. knative/")
    ingress_command.add_argument("--port", type=int, required=True)
    dispatch_command = commands.add_parser("dispatch")
    dispatch_command.add_argument("broker")
    dispatch_command.add_argument("trigger")
    dispatch_command.add_argument("--manifests", type=Path, required=True, help="e.g. knative/")
    dispatch_command.add_argument("--metrics-port", type=int, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported by us

    host = os.environ.get("RIPPLE_BROKER_HOST", "127.0.0.1")
    try:
        amqp_url = required("RIPPLE_BROKER_AMQP_URL", "RabbitMQ's amqp:// URL")
        notifications = find(arguments.broker, arguments.manifests)
        if arguments.command == "ingress":
            registry = CollectorRegistry()
            server = serve(Ingress(notifications.broker, amqp_url, registry), host, arguments.port)
            signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
            print(
                f"broker ingress {notifications.broker.name} on http://{host}:{arguments.port}/",
                flush=True,
            )
            server.serve_forever()
            return 0
        trigger = notifications.trigger(arguments.trigger)
        delivery = notifications.delivery_of(trigger)
        where = f"{trigger.path}: Trigger {trigger.name}"
        addresses = Addresses.from_env()
        subscriber = addresses.url(trigger.subscriber, f"{where}: spec.subscriber")
        dead_letter = (
            addresses.url(delivery.dead_letter_sink, f"{where}: delivery.deadLetterSink")
            if delivery.dead_letter_sink
            else None
        )
    except ConfigError as error:
        print(f"ripple broker: {error}", file=sys.stderr)
        return 2
    metrics = DispatcherMetrics(CollectorRegistry())
    start_http_server(arguments.metrics_port, addr=host, registry=metrics.registry)
    dispatcher = TriggerDispatcher(notifications, trigger, amqp_url, subscriber, dead_letter, metrics)
    signal.signal(signal.SIGTERM, lambda *_: dispatcher.stop.set())
    signal.signal(signal.SIGINT, lambda *_: dispatcher.stop.set())
    dispatcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
