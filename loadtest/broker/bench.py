"""Throughput of the notifications Broker's data plane, beside the KafkaSource path, same run.

    .venv/bin/python -m loadtest.broker.bench [--events 5000] [--clients 16] [--parallelism 4,16]
    make bench-broker

With the stack up (`make up`), on a private Broker and Trigger of its own (a temporary manifest
folder, its own exchange and queue, so the live Triggers are not touched):

1. ingress: N CloudEvents (binary mode, ~230-byte order body) posted by `--clients` threads to a
   private `python -m knative_standins.broker ingress`; events/s counted on 202s, i.e. after
   RabbitMQ's publisher confirm (durable exchange, persistent messages, quorum queue).
2. delivery through one Trigger: the N queued events, then a private dispatcher started for a
   Trigger whose subscriber is the event-store function; events/s from its start until all N rows
   are in PostgreSQL, and the steady rate between 10 % and 90 %. Once per `--parallelism`.
3. the KafkaSource path for comparison: the same N events on a fresh 3-partition topic, then
   `python -m knative_standins.kafkasource` (unordered, like knative/event-store) into the same
   event-store, measured the same way.
Prints one table with the load average; removes its rows, topic, exchange and queues afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import requests
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text

from knative_standins.broker.manifest import load_all
from knative_standins.broker.topology import (
    dead_letter_exchange_name,
    dead_letter_queue_name,
    declare_trigger,
    exchange_name,
    queue_name,
)
from loadtest.measure import free_port, stored_rows
from ripple_stack.components.functions import knative_functions, standin_addresses
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, load_settings

BODY = (
    '{"orderId": "o-%d", "customerId": "c-%d", "items": [{"sku": "s-1", "quantity": 1, '
    '"unitPrice": 9.5}], "amount": 9.5, "currency": "EUR"}'
)


def write_manifests(directory: Path, broker: str, parallelism: int, sink: str, dead_letters: str) -> None:
    folder = directory / broker
    folder.mkdir(parents=True, exist_ok=True)
    documents = [
        {
            "apiVersion": "eventing.knative.dev/v1alpha1",
            "kind": "RabbitmqBrokerConfig",
            "metadata": {"name": f"{broker}-config", "namespace": "ripple"},
            "spec": {"rabbitmqClusterReference": {"name": "ripple-rabbitmq"}, "queueType": "quorum"},
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {
                "name": broker,
                "namespace": "ripple",
                "annotations": {"eventing.knative.dev/broker.class": "RabbitMQBroker"},
            },
            "spec": {
                "config": {
                    "apiVersion": "eventing.knative.dev/v1alpha1",
                    "kind": "RabbitmqBrokerConfig",
                    "name": f"{broker}-config",
                }
            },
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {
                "name": f"{broker}-store",
                "namespace": "ripple",
                "annotations": {"rabbitmq.eventing.knative.dev/parallelism": str(parallelism)},
            },
            "spec": {
                "broker": broker,
                "subscriber": {"uri": sink},
                "delivery": {"retry": 8, "backoffDelay": "PT0.2S", "deadLetterSink": {"uri": dead_letters}},
            },
        },
    ]
    (folder / "broker.yaml").write_text(yaml.safe_dump_all(documents))


def wait_rows(engine, source: str, total: int, process: subprocess.Popen, log: Path) -> tuple[float, float]:
    """(overall events/s, steady events/s between 10 % and 90 %) from now until total rows."""
    started = time.monotonic()
    marks: dict[float, float] = {}
    count = 0
    while count < total:
        if process.poll() is not None:
            raise SystemExit(f"the dispatcher exited ({process.returncode}); see {log}")
        if time.monotonic() - started > 1800:
            raise SystemExit(f"gave up after 30 min with {count}/{total} rows; see {log}")
        time.sleep(0.2)
        count = stored_rows(engine, source)
        for fraction in (0.1, 0.9):
            if fraction not in marks and count >= fraction * total:
                marks[fraction] = time.monotonic()
    elapsed = time.monotonic() - started
    return total / elapsed, 0.8 * total / ((marks[0.9] - marks[0.1]) or 1e-9)


def start(command: list[str], log: Path) -> subprocess.Popen:
    """A stand-in process, told where the stack's RabbitMQ and Kafka are (as the runner tells it)."""
    settings = load_settings()
    env = {
        **os.environ,
        **standin_addresses(settings).to_env(),
        "RIPPLE_BROKER_AMQP_URL": settings.amqp_url(load_secrets(settings)["RIPPLE_RABBITMQ_PASSWORD"]),
    }
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", *command], cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT, env=env
        )


def post_all(url: str, source: str, total: int, clients: int) -> tuple[float, int]:
    """(events/s confirmed, failures) posting total events from `clients` threads."""
    counter = iter(range(total))
    lock = threading.Lock()
    failures = [0]

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"bench-{n}",
                "ce-source": source,
                "ce-type": "dev.ripple.shop.order.placed",
                "ce-time": "2026-11-25T12:00:00Z",
                "ce-tenant": "bench",
                "content-type": "application/json",
            }
            response = session.post(url, data=BODY % (n % 5000, n % 97), headers=headers, timeout=30)
            if response.status_code != 202:
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return total / (time.monotonic() - started), failures[0]


def wait_http(url: str, process: subprocess.Popen, log: Path) -> None:
    for _ in range(150):
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited; see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer; see {log}")


def broker_run(settings, secrets, engine, services, total: int, clients: int, parallelism: int, work: Path):
    broker = f"bench-{uuid.uuid4().hex[:6]}"
    source = f"/bench/{broker}"
    write_manifests(work, broker, parallelism, services["event-store"], services["dead-letters"])
    (notifications,) = [n for n in load_all(sorted(work.glob("*/*.yaml"))) if n.broker.name == broker]
    (trigger,) = notifications.triggers
    amqp = pika.BlockingConnection(pika.URLParameters(settings.amqp_url(secrets["RIPPLE_RABBITMQ_PASSWORD"])))
    channel = amqp.channel()
    declare_trigger(channel, notifications.broker, trigger)  # the queue exists before events arrive
    log = settings.log_dir / "bench-broker.log"
    port = free_port()
    ingress = start(
        ["knative_standins.broker", "ingress", broker, "--manifests", str(work), "--port", str(port)], log
    )
    dispatcher = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", ingress, log)
        ingress_rate, failures = post_all(f"http://127.0.0.1:{port}/", source, total, clients)
        queued = channel.queue_declare(queue_name(trigger), passive=True).method.message_count
        metrics_port = free_port()
        dispatcher = start(
            [
                "knative_standins.broker",
                "dispatch",
                broker,
                trigger.name,
                "--manifests",
                str(work),
                "--metrics-port",
                str(metrics_port),
            ],
            log,
        )
        overall, steady = wait_rows(engine, source, total - failures, dispatcher, log)
        return ingress_rate, failures, queued, overall, steady
    finally:
        for process in (ingress, dispatcher):
            if process is not None:
                process.terminate()
                process.wait(30)
        for name in (queue_name(trigger), dead_letter_queue_name(trigger)):
            channel.queue_delete(name)
        for name in (exchange_name(notifications.broker), dead_letter_exchange_name(trigger)):
            channel.exchange_delete(name)
        amqp.close()
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})


def kafkasource_run(settings, engine, services, total: int, work: Path) -> tuple[float, float]:
    topic = f"ripple.bench.broker.{uuid.uuid4().hex[:8]}"
    source = f"/bench/kafkasource-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ripple-bench")
    admin.create_topics([NewTopic(topic, 3, 1)])
    log = settings.log_dir / "bench-broker.log"
    process = None
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
        for n in range(total):
            headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", f"bench-{n}".encode()),
                ("ce_source", source.encode()),
                ("ce_type", b"dev.ripple.shop.order.placed"),
                ("ce_time", b"2026-11-25T12:00:00Z"),
                ("ce_tenant", b"bench"),
                ("content-type", b"application/json"),
            ]
            producer.send(
                topic,
                key=f"bench/o-{n % 5000}".encode(),
                value=(BODY % (n % 5000, n % 97)).encode(),
                headers=headers,
            )
        producer.flush(120)
        producer.close()
        manifest = work / "kafkasource.yaml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "sources.knative.dev/v1beta1",
                    "kind": "KafkaSource",
                    "metadata": {"name": "bench-broker-peer", "namespace": "ripple"},
                    "spec": {
                        "bootstrapServers": ["ripple-kafka-bootstrap.ripple.svc:9092"],
                        "topics": [topic],
                        "consumerGroup": f"ripple-bench-{uuid.uuid4().hex[:10]}",
                        "initialOffset": "earliest",
                        "ordering": "unordered",
                        "sink": {"uri": services["event-store"]},
                        "delivery": {
                            "retry": 8,
                            "backoffDelay": "PT0.2S",
                            "deadLetterSink": {"uri": services["dead-letters"]},
                        },
                    },
                }
            )
        )
        process = start(
            ["knative_standins.kafkasource", str(manifest), "--metrics-port", str(free_port())], log
        )
        return wait_rows(engine, source, total, process, log)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        admin.delete_topics([topic])
        admin.close()
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients of the ingress")
    parser.add_argument(
        "--parallelism", default="4,16", help="Trigger parallelism values to run, comma-separated"
    )
    parser.add_argument("--skip-kafkasource", action="store_true")
    arguments = parser.parse_args()
    # Ctrl-C or kill: unwind, so the private processes, queues, topic and rows are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = load_settings()
    secrets = load_secrets(settings)
    engine = create_engine(settings.postgres_url(secrets["RIPPLE_POSTGRES_PASSWORD"]), pool_pre_ping=True)
    services = {f.name: f.url(settings) for f in knative_functions()}
    lines = []
    with tempfile.TemporaryDirectory(prefix="ripple-bench-broker-") as folder:
        work = Path(folder)
        for parallelism in [int(p) for p in arguments.parallelism.split(",")]:
            ingress_rate, failures, queued, overall, steady = broker_run(
                settings, secrets, engine, services, arguments.events, arguments.clients, parallelism, work
            )
            lines.append(
                f"| Broker ingress ({arguments.clients} clients), 202 after confirm | {ingress_rate:,.0f} "
                f"| | {failures} not 202; {queued} queued |"
            )
            lines.append(
                f"| Trigger -> event-store -> PostgreSQL, parallelism {parallelism} "
                f"| {overall:,.0f} | {steady:,.0f} | |"
            )
        if not arguments.skip_kafkasource:
            overall, steady = kafkasource_run(settings, engine, services, arguments.events, work)
            lines.append(
                f"| KafkaSource (unordered) -> event-store -> PostgreSQL "
                f"| {overall:,.0f} | {steady:,.0f} | peer |"
            )
    load = os.getloadavg()
    print(
        f"\n{arguments.events} events each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"on {os.cpu_count()} CPUs (shared machine: compare rows of the same run)\n"
    )
    print("| path | events/s overall | events/s steady (10-90 %) | note |")
    print("|---|---|---|---|")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-broker"):
        sys.exit(main())
