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
4. the notifications path as it runs (`--notifier-rates`, skipped with `--notifier-rates ""`): a
   private Broker and a Trigger like knative/notifications/triggers.yaml's `notifier` (its
   parallelism unless `--notifier-parallelism`, its delivery) into the live notifier function
   (scaled by knative/notifier/service.yaml's annotations), which mails the stack's mail sink.
   Flagged-order events, `ce-time` = when sent, are offered at each rate for `--notifier-seconds`;
   the row reports mails/s while offered, alert -> mail delay p50/p99/max (the event's time to the
   `sent_at` the notifier records), and dead letters. Then `--notifier-backlog` events queued at
   once and drained: the most the path sustains. Its rows, dead letters and mails are removed.
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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pika
import requests
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import create_engine, text

from knative_standins.broker.manifest import Broker, Trigger, load_all
from knative_standins.broker.topology import (
    dead_letter_exchange_name,
    dead_letter_queue_name,
    declare_trigger,
    exchange_name,
    queue_name,
)
from loadtest.dispatcher.bench import manifest as kafkasource_manifest
from loadtest.dispatcher.bench import order_headers
from loadtest.measure import count_until, free_port, stored_rows
from ripple_stack.components.functions import knative_functions, standin_addresses
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, load_settings

BODY = (
    '{"orderId": "o-%d", "customerId": "c-%d", "items": [{"sku": "s-1", "quantity": 1, '
    '"unitPrice": 9.5}], "amount": 9.5, "currency": "EUR"}'
)


def tear_down(
    amqp: pika.BlockingConnection,
    channel: BlockingChannel,
    broker: Broker,
    trigger: Trigger,
    processes: tuple[subprocess.Popen | None, ...],
) -> None:
    """Stop a run's private ingress and dispatcher and delete its queues and exchanges."""
    for process in processes:
        if process is not None:
            process.terminate()
            process.wait(30)
    for name in (queue_name(trigger), dead_letter_queue_name(trigger)):
        channel.queue_delete(name)
    for name in (exchange_name(broker), dead_letter_exchange_name(trigger)):
        channel.exchange_delete(name)
    amqp.close()


def broker_documents(broker: str) -> list[dict]:
    """A private RabbitMQ Broker and its config, as knative/notifications/broker.yaml declares ours."""
    return [
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
    ]


def write_manifests(directory: Path, broker: str, parallelism: int, sink: str, dead_letters: str) -> None:
    folder = directory / broker
    folder.mkdir(parents=True, exist_ok=True)
    documents = [
        *broker_documents(broker),
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
    progress = count_until(lambda: stored_rows(engine, source), total, process, log)
    return total / progress.elapsed, progress.steady(total)


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


def post_from_threads(
    numbers: Iterator[int], clients: int, send: Callable[[requests.Session, int], int]
) -> int:
    """`clients` threads, each on its own session, send the numbers' events until none is left:
    how many were not answered 202."""
    lock = threading.Lock()
    failures = [0]

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            if send(session, n) != 202:
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures[0]


def post_all(url: str, source: str, total: int, clients: int) -> tuple[float, int]:
    """(events/s confirmed, failures) posting total events from `clients` threads."""

    def send(session: requests.Session, n: int) -> int:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": f"bench-{n}",
            "ce-source": source,
            "ce-type": "dev.ripple.shop.order.placed",
            "ce-time": "2026-11-25T12:00:00Z",
            "ce-tenant": "bench",
            "content-type": "application/json",
        }
        return session.post(url, data=BODY % (n % 5000, n % 97), headers=headers, timeout=30).status_code

    started = time.monotonic()
    failures = post_from_threads(iter(range(total)), clients, send)
    return total / (time.monotonic() - started), failures


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
        tear_down(amqp, channel, notifications.broker, trigger, (ingress, dispatcher))
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})


FLAGGED_BODY = '{"orderId": "o-%d", "amount": 5000, "currency": "EUR", "reason": "amount above 1000"}'


def notifier_trigger(broker: str, parallelism: int | None, notifier: str, dead_letters: str) -> dict:
    """The live manifests' notifier Trigger, renamed for a private Broker, subscriber by URI."""
    live = yaml.safe_load_all((REPO_ROOT / "knative/notifications/triggers.yaml").read_text())
    (document,) = [d for d in live if d["metadata"]["name"] == "notifier"]
    annotations = dict(document["metadata"].get("annotations", {}))
    if parallelism is not None:
        annotations["rabbitmq.eventing.knative.dev/parallelism"] = str(parallelism)
    delivery = dict(document["spec"]["delivery"])
    delivery["deadLetterSink"] = {"uri": dead_letters}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": f"{broker}-notifier", "namespace": "ripple", "annotations": annotations},
        "spec": {
            "broker": broker,
            "filter": document["spec"]["filter"],
            "subscriber": {"uri": notifier},
            "delivery": delivery,
        },
    }


def post_paced(
    url: str, source: str, rate: float | None, seconds: float, first: int, total: int = 0
) -> tuple[int, int]:
    """Offer flagged events at `rate`/s for `seconds` (ce-time = when sent): (sent, not 202).

    rate None: `total` events as fast as the ingress confirms them (a backlog)."""
    total = total if rate is None else max(1, round(rate * seconds))
    started = time.monotonic()

    def send(session: requests.Session, n: int) -> int:
        due = started + (n - first) / rate if rate else 0.0
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = {
            "ce-specversion": "1.0",
            "ce-id": f"bench-alert-{n}",
            "ce-source": source,
            "ce-type": "dev.ripple.shop.order.flagged",
            "ce-time": now,
            "ce-tenant": "bench",
            "content-type": "application/json",
        }
        return session.post(url, data=FLAGGED_BODY % n, headers=headers, timeout=30).status_code

    return total, post_from_threads(iter(range(first, first + total)), 16, send)


def notified(engine, source: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM notifications WHERE source = :s AND state = 'sent'"), {"s": source}
        ).scalar_one()


def wait_notified(engine, source: str, total: int, process: subprocess.Popen, log: Path) -> None:
    count_until(lambda: notified(engine, source), total, process, log, "mailed", 900, 0.5)


def delay_figures(engine, source: str, first: int, last: int) -> dict[str, float]:
    """Mails/s while offered and alert -> mail delay of events first..last (ids bench-alert-N)."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "WITH d AS (SELECT sent_at, event_time, extract(epoch FROM sent_at - event_time) AS s"
                " FROM notifications WHERE source = :s AND state = 'sent'"
                " AND substring(id FROM 13)::int BETWEEN :a AND :b)"
                " SELECT count(*) AS mails, extract(epoch FROM max(sent_at) - min(event_time)) AS span,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99, max(s) AS worst,"
                " (SELECT count(*) FROM dead_letters WHERE source = :s) AS dead FROM d"
            ),
            {"s": source, "a": first, "b": last},
        ).one()
    return {
        "mails": row.mails,
        "rate": row.mails / float(row.span or 1e-9),
        "p50": float(row.p50 or 0),
        "p99": float(row.p99 or 0),
        "max": float(row.worst or 0),
        "dead": row.dead,
    }


def remove_mails(mail_dir: Path, source: str) -> int:
    """Delete the mail sink's files of this run's events (the tests scan that folder)."""
    marker = f"\nX-Ripple-Event-Source: {source}\r\n".encode()
    removed = 0
    for path in mail_dir.glob("*.eml"):
        try:
            with path.open("rb") as mail:
                head = mail.read(4096)
        except FileNotFoundError:
            continue
        if marker in head:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def notifier_run(
    settings,
    secrets,
    engine,
    services,
    rates: list[float],
    seconds: float,
    backlog: int,
    parallelism: int | None,
    work: Path,
) -> tuple[int, list[str]]:
    """The notifications path into the live notifier: (parallelism used, table rows)."""
    broker = f"bench-{uuid.uuid4().hex[:6]}"
    source = f"/bench/{broker}"
    folder = work / broker
    folder.mkdir(parents=True, exist_ok=True)
    trigger_document = notifier_trigger(broker, parallelism, services["notifier"], services["dead-letters"])
    (folder / "broker.yaml").write_text(yaml.safe_dump_all([*broker_documents(broker), trigger_document]))
    (notifications,) = [n for n in load_all(sorted(folder.glob("*.yaml"))) if n.broker.name == broker]
    (trigger,) = notifications.triggers
    amqp = pika.BlockingConnection(pika.URLParameters(settings.amqp_url(secrets["RIPPLE_RABBITMQ_PASSWORD"])))
    channel = amqp.channel()
    declare_trigger(channel, notifications.broker, trigger)
    log = settings.log_dir / "bench-broker.log"
    port = free_port()
    command = ["knative_standins.broker"]
    ingress = start([*command, "ingress", broker, "--manifests", str(work), "--port", str(port)], log)
    dispatcher = None
    lines = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", ingress, log)
        dispatch = [*command, "dispatch", broker, trigger.name, "--manifests", str(work)]
        dispatcher = start([*dispatch, "--metrics-port", str(free_port())], log)
        url = f"http://127.0.0.1:{port}/"
        first = 0
        # Warm-up: the notifier may be at zero; its cold start is not the steady rate.
        sent, failures = post_paced(url, source, 20, 1, first)
        wait_notified(engine, source, sent - failures, dispatcher, log)
        first += sent
        for rate in rates:
            sent, failures = post_paced(url, source, rate, seconds, first)
            wait_notified(engine, source, first + sent - failures, dispatcher, log)
            figures = delay_figures(engine, source, first, first + sent - 1)
            lines.append(
                f"| Trigger -> notifier -> SMTP, {rate:g} alerts/s offered for {seconds:g} s, parallelism "
                f"{trigger.parallelism} | {figures['rate']:,.0f} | delay p50 {figures['p50']:.2f} s, "
                f"p99 {figures['p99']:.2f} s, max {figures['max']:.2f} s | {failures} not 202; "
                f"{figures['dead']} dead letters |"
            )
            first += sent
        if backlog:
            queued_at = first
            dispatcher.terminate()
            dispatcher.wait(30)
            sent, failures = post_all_flagged(url, source, backlog, queued_at)
            dispatcher = start([*dispatch, "--metrics-port", str(free_port())], log)
            drained = sent - failures
            progress = count_until(
                lambda: notified(engine, source) - queued_at, drained, dispatcher, log, "drained", 900
            )
            overall, steady = drained / progress.elapsed, progress.steady(drained)
            lines.append(
                f"| Trigger -> notifier -> SMTP, {backlog} queued alerts drained, parallelism "
                f"{trigger.parallelism} | {overall:,.0f} | steady (10-90 %) {steady:,.0f}/s | "
                f"{failures} not 202 |"
            )
        return trigger.parallelism, lines
    finally:
        tear_down(amqp, channel, notifications.broker, trigger, (ingress, dispatcher))
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM notifications WHERE source = :s"), {"s": source})
            connection.execute(text("DELETE FROM dead_letters WHERE source = :s"), {"s": source})
        remove_mails(settings.mail_dir, source)


def post_all_flagged(url: str, source: str, total: int, first: int) -> tuple[int, int]:
    """Queue `total` flagged events as fast as the ingress confirms them: (sent, not 202)."""
    return post_paced(url, source, None, 0, first, total)


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
            producer.send(
                topic,
                key=f"bench/o-{n % 5000}".encode(),
                value=(BODY % (n % 5000, n % 97)).encode(),
                headers=order_headers(n, source),
            )
        producer.flush(120)
        producer.close()
        sinks = (services["event-store"], services["dead-letters"])
        manifest = kafkasource_manifest(
            work, topic, "unordered", *sinks, name="bench-broker-peer", timeout=None
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
    parser.add_argument(
        "--notifier-rates",
        default="115,250",
        help="alerts/s offered to the notifications path, comma-separated ('' skips it)",
    )
    parser.add_argument("--notifier-seconds", type=float, default=30, help="seconds each rate is offered")
    parser.add_argument(
        "--notifier-backlog", type=int, default=3000, help="alerts queued, then drained (0: none)"
    )
    parser.add_argument(
        "--notifier-parallelism", type=int, default=None, help="default: the notifier Trigger's annotation"
    )
    parser.add_argument("--skip-event-store", action="store_true", help="only the notifications path")
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
        for parallelism in (
            [] if arguments.skip_event_store else [int(p) for p in arguments.parallelism.split(",")]
        ):
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
        rates = [float(r) for r in arguments.notifier_rates.split(",") if r.strip()]
        if rates or arguments.notifier_backlog:
            _, notifier_lines = notifier_run(
                settings,
                secrets,
                engine,
                services,
                rates,
                arguments.notifier_seconds,
                arguments.notifier_backlog,
                arguments.notifier_parallelism,
                work,
            )
            lines.extend(notifier_lines)
        if not arguments.skip_kafkasource and not arguments.skip_event_store:
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
