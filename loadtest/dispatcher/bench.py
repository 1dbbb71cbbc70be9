"""Throughput of Kafka -> KafkaSource dispatcher -> event-store -> PostgreSQL, ordered and unordered.

    .venv/bin/python loadtest/dispatcher/bench.py [--events 20000] [--max-in-flight 100]
    make bench-dispatcher

Needs the local stack (`make up`: Kafka, PostgreSQL, the event-store and dead-letters functions).
For each mode it pre-fills a fresh 3-partition topic with N order events (CloudEvents Kafka
binding, binary mode), then starts a dispatcher on a manifest like knative/event-store's (own
consumer group) and measures from the dispatcher's start until all N rows are in PostgreSQL
(startup and group join included), and the steady rate between 10 % and 90 % of the rows.
Prints a table; the topics and the benchmark's rows are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from ripple_stack.components.functions import knative_functions
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, load_settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefill(bootstrap: str, topic: str, source: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for n in range(count):
        order_id = f"o-{n % 5000}"
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", f"bench-{n}".encode()),
            ("ce_source", source.encode()),
            ("ce_type", b"dev.ripple.shop.order.placed"),
            ("ce_time", b"2026-11-25T12:00:00Z"),
            ("ce_tenant", b"bench"),
            ("ce_partitionkey", f"bench/{order_id}".encode()),
            ("content-type", b"application/json"),
        ]
        value = (
            f'{{"orderId": "{order_id}", "customerId": "c-{n % 97}", "items": [{{"sku": "s-1", '
            f'"quantity": 1, "unitPrice": 9.5}}], "amount": 9.5, "currency": "EUR"}}'
        ).encode()
        producer.send(topic, key=f"bench/{order_id}".encode(), value=value, headers=headers)
    producer.flush(120)
    producer.close()


def manifest(directory: Path, topic: str, ordering: str, sink: str, dead_letters: str) -> Path:
    name = f"bench-{ordering}-{uuid.uuid4().hex[:6]}"
    document = {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": {"name": name, "namespace": "ripple"},
        "spec": {
            "bootstrapServers": ["ripple-kafka-bootstrap.ripple.svc:9092"],
            "topics": [topic],
            "consumerGroup": f"ripple-bench-{uuid.uuid4().hex[:10]}",
            "initialOffset": "earliest",
            "ordering": ordering,
            "sink": {"uri": sink},
            "delivery": {
                "retry": 8,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT0.2S",
                "timeout": "PT10S",
                "deadLetterSink": {"uri": dead_letters},
            },
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def count(engine, source: str) -> int:
    """Rows of the run so far; -1 while PostgreSQL cannot be reached (the stack is shared)."""
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM events WHERE source = :s"), {"s": source}
            ).scalar_one()
    except OperationalError:
        return -1


def run(engine, path: Path, source: str, total: int, max_in_flight: int, log: Path) -> dict:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ripple_stack.kafkasource", str(path), "--metrics-port", str(free_port())],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RIPPLE_DISPATCHER_MAX_IN_FLIGHT": str(max_in_flight)},
        )
    started = time.monotonic()
    marks: dict[float, float] = {}
    try:
        stored = 0
        while stored < total:
            if process.poll() is not None:
                raise SystemExit(f"the dispatcher exited ({process.returncode}); see {log}")
            if time.monotonic() - started > 1800:
                raise SystemExit(f"gave up after 30 min with {stored}/{total} stored; see {log}")
            time.sleep(0.2)
            stored = count(engine, source)
            for fraction in (0.1, 0.9):
                if fraction not in marks and stored >= fraction * total:
                    marks[fraction] = time.monotonic()
        elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)
    steady = (marks[0.9] - marks[0.1]) or 1e-9
    return {"seconds": elapsed, "overall": total / elapsed, "steady": 0.8 * total / steady}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--max-in-flight", type=int, default=100)
    arguments = parser.parse_args()
    settings = load_settings()
    engine = create_engine(settings.postgres_url(load_secrets(settings)["RIPPLE_POSTGRES_PASSWORD"]))
    urls = {f.name: f.url(settings) + "/" for f in knative_functions()}
    if "event-store" not in urls or "dead-letters" not in urls:
        print(
            "bench: knative/event-store and knative/dead-letters are needed; run `make up`.", file=sys.stderr
        )
        return 2
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ripple-bench")
    results, topics, sources = [], [], []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for ordering in ("ordered", "unordered"):
                topic = f"ripple.bench.{ordering}.{uuid.uuid4().hex[:8]}"
                source = f"/bench/{ordering}/{uuid.uuid4().hex[:8]}"
                admin.create_topics([NewTopic(topic, 3, 1)])
                topics.append(topic)
                sources.append(source)
                print(f"pre-filling {topic} with {arguments.events} events…", flush=True)
                prefill(settings.kafka_bootstrap, topic, source, arguments.events)
                path = manifest(Path(scratch), topic, ordering, urls["event-store"], urls["dead-letters"])
                print(f"dispatching ({ordering})…", flush=True)
                log = settings.log_dir / f"bench-dispatcher-{ordering}.log"
                result = run(engine, path, source, arguments.events, arguments.max_in_flight, log)
                results.append((ordering, result))
    finally:
        if topics:
            admin.delete_topics(topics)
        admin.close()
        try:
            with engine.begin() as connection:
                for source in sources:
                    connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})
        except OperationalError:
            print(f"bench: could not delete the rows of {', '.join(sources)} from events", file=sys.stderr)
    print()
    print(
        f"{'mode':<10} {'events':>8} {'in flight':>9} {'seconds':>8} {'events/s':>9} {'steady events/s':>16}"
    )
    for ordering, result in results:
        in_flight = f"<={arguments.max_in_flight}" if ordering == "unordered" else "1/part."
        print(
            f"{ordering:<10} {arguments.events:>8} {in_flight:>9} {result['seconds']:>8.1f} "
            f"{result['overall']:>9.0f} {result['steady']:>16.0f}"
        )
    print(
        "ordered: one event at a time per partition (3 partitions); unordered: up to --max-in-flight at once."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
