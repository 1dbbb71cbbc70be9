"""Run one piece of a Broker's data plane: `ingress <broker>` or `dispatch <broker> <trigger>`.

  python -m ripple_stack.rabbitmq ingress notifications --port 18600
  python -m ripple_stack.rabbitmq dispatch notifications notifier --metrics-port 18610

The manifests are read from knative/ (--manifests: another folder of <name>/*.yaml, for
benchmarks); RabbitMQ's address and password from the local stack's settings and secrets
(RIPPLE_HOME). components/brokers.py starts one of each under supervisord.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from ..components.functions import KNATIVE_DIR
from ..secrets import load_secrets
from ..settings import load_settings
from .dispatcher import TriggerDispatcher
from .ingress import Ingress, serve
from .manifest import ManifestError, Notifications, knative_manifests, load_all
from .metrics import DispatcherMetrics
from .resolve import destination_url


def find(name: str, directory: Path) -> Notifications:
    for notifications in load_all(knative_manifests(directory)):
        if notifications.broker.name == name:
            return notifications
    raise ManifestError(f"there is no RabbitMQBroker {name!r} in {directory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ripple_stack.rabbitmq", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingress_command = commands.add_parser("ingress")
    ingress_command.add_argument("broker")
    ingress_command.add_argument("--manifests", type=Path, default=KNATIVE_DIR, help="default: knative/")
    ingress_command.add_argument("--port", type=int, required=True)
    dispatch_command = commands.add_parser("dispatch")
    dispatch_command.add_argument("broker")
    dispatch_command.add_argument("trigger")
    dispatch_command.add_argument("--manifests", type=Path, default=KNATIVE_DIR, help="default: knative/")
    dispatch_command.add_argument("--metrics-port", type=int, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported by us

    settings = load_settings()
    amqp_url = settings.amqp_url(load_secrets(settings)["RIPPLE_RABBITMQ_PASSWORD"])
    try:
        notifications = find(arguments.broker, arguments.manifests)
        if arguments.command == "ingress":
            registry = CollectorRegistry()
            server = serve(Ingress(notifications.broker, amqp_url, registry), settings.host, arguments.port)
            signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
            print(
                f"broker ingress {notifications.broker.name} on http://{settings.host}:{arguments.port}/",
                flush=True,
            )
            server.serve_forever()
            return 0
        trigger = notifications.trigger(arguments.trigger)
        delivery = notifications.delivery_of(trigger)
        where = f"{trigger.path}: Trigger {trigger.name}"
        subscriber = destination_url(trigger.subscriber, f"{where}: spec.subscriber", settings)
        dead_letter = (
            destination_url(delivery.dead_letter_sink, f"{where}: delivery.deadLetterSink", settings)
            if delivery.dead_letter_sink
            else None
        )
    except ManifestError as error:
        print(f"ripple broker: {error}", file=sys.stderr)
        return 2
    metrics = DispatcherMetrics(CollectorRegistry())
    start_http_server(arguments.metrics_port, addr=settings.host, registry=metrics.registry)
    dispatcher = TriggerDispatcher(notifications, trigger, amqp_url, subscriber, dead_letter, metrics)
    signal.signal(signal.SIGTERM, lambda *_: dispatcher.stop.set())
    signal.signal(signal.SIGINT, lambda *_: dispatcher.stop.set())
    dispatcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
