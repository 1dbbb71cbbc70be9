"""Throughput and CPU cost of the KafkaSource dispatcher, ordered and unordered, on two paths.

    .venv/bin/python -m loadtest.dispatcher.bench [--events 20000] [--paths sink,store] [--profile DIR]
    make bench-dispatcher

- `sink`: the dispatcher alone, delivering to a trivial sink (a private nginx answering 202, the
  sink `make bench-peers` gives Knative's dispatcher): what the dispatcher itself costs.
- `store`: Kafka -> dispatcher -> event-store -> PostgreSQL with the whole stack running (`make up`:
  Kafka, PostgreSQL, the event-store and dead-letters functions).
- `alerts`: Kafka -> dispatcher -> order-alerts, as knative/order-alerts/kafkasource.yaml runs it
  (ordered: one event in flight per partition). The orders are below ALERT_THRESHOLD (what most
  orders are), so the function answers from its fast path and no notification is sent.

For each path and mode it pre-fills a fresh 3-partition topic with N order events (CloudEvents
Kafka binding, binary mode, ~230-byte body), starts `python -m knative_standins.kafkasource` on a
manifest like knative/event-store's (own consumer group), and measures from the dispatcher's start
until all N are delivered (metrics) or stored (rows), plus the steady rate between 10 % and 90 %.
CPU ms/event is the dispatcher process's user+system time (/proc) over that steady window.
`--profile DIR` also records a py-spy flame graph of each run (DIR/<path>-<mode>.svg).
Prints a table with the load average; the topics and the benchmark's rows are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from loadtest.dispatcher.sink import trivial_sink
from loadtest.measure import count_until, flame_graph, free_port, stored_rows
from ripple_stack.components.functions import knative_functions, standin_addresses
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, ConfigError, Settings, load_settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DELIVERED = re.compile(r"^ripple_dispatcher_events_delivered_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def order_headers(n: int, source: str, *extensions: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    """The Kafka headers of bench order n in binary mode (the gateway's), its extensions before
    content-type; the broker bench's KafkaSource run writes the same records."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"bench-{n}".encode()),
        ("ce_source", source.encode()),
        ("ce_type", b"dev.ripple.shop.order.placed"),
        ("ce_time", b"2026-11-25T12:00:00Z"),
        ("ce_tenant", b"bench"),
        *extensions,
        ("content-type", b"application/json"),
    ]


def prefill(bootstrap: str, topic: str, source: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for n in range(count):
        order_id = f"o-{n % 5000}"
        headers = order_headers(n, source, ("ce_partitionkey", f"bench/{order_id}".encode()))
        value = (
            f'{{"orderId": "{order_id}", "customerId": "c-{n % 97}", "items": [{{"sku": "s-1", '
            f'"quantity": 1, "unitPrice": 9.5}}], "amount": 9.5, "currency": "EUR"}}'
        ).encode()
        producer.send(topic, key=f"bench/{order_id}".encode(), value=value, headers=headers)
    producer.flush(120)
    producer.close()


def kafkasource_manifest(
    directory: Path,
    name: str,
    topics: list[str],
    sink: str,
    delivery: dict,
    *,
    group: str,
    ordering: str,
    initial_offset: str = "earliest",
) -> Path:
    """A KafkaSource for the local dispatcher, written to <directory>/<name>.yaml (the stand-in's
    tests write theirs with it too). bootstrapServers is the in-cluster address, as in knative/:
    the dispatcher rewrites it to the local broker."""
    document = {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": {"name": name, "namespace": "ripple"},
        "spec": {
            "bootstrapServers": ["ripple-kafka-bootstrap.ripple.svc:9092"],
            "topics": topics,
            "consumerGroup": group,
            "initialOffset": initial_offset,
            "ordering": ordering,
            "sink": {"uri": sink},
            "delivery": delivery,
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def manifest(
    directory: Path,
    topic: str,
    ordering: str,
    sink: str,
    dead_letters: str,
    name: str | None = None,
    timeout: str | None = "PT10S",
) -> Path:
    """A KafkaSource of its own from the topic's start to the sink (timeout None: Knative's default)."""
    delivery = {"retry": 8, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S", "timeout": timeout}
    return kafkasource_manifest(
        directory,
        name or f"bench-{ordering}-{uuid.uuid4().hex[:6]}",
        [topic],
        sink,
        {key: value for key, value in delivery.items() if value is not None}
        | {"deadLetterSink": {"uri": dead_letters}},
        group=f"ripple-bench-{uuid.uuid4().hex[:10]}",
        ordering=ordering,
    )


def delivered(metrics_port: int) -> int:
    """Events the dispatcher's sink acknowledged so far (its metrics); -1 before it serves them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            page = response.read().decode()
    except OSError:
        return -1
    return int(sum(float(value) for value in DELIVERED.findall(page)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass(frozen=True)
class StackFunctions:
    """What the store and alerts paths use of the running stack (`make up`); `make bench-peers`
    measures the store path with it too (loadtest/peers/store.py)."""

    engine: Engine  # the stack's PostgreSQL: the run's rows are counted there, then deleted
    urls: dict[str, str]  # function name -> its address, with the trailing slash
    env: dict[str, str]  # the stand-in's addresses: the manifests' in-cluster Kafka -> the stack's


def stack_functions(settings: Settings) -> StackFunctions:
    """The stack's PostgreSQL and function addresses; ConfigError when a function is missing."""
    urls = {f.name: f.url(settings) + "/" for f in knative_functions()}
    if not {"event-store", "order-alerts", "dead-letters"} <= urls.keys():
        raise ConfigError("knative/event-store, order-alerts and dead-letters are needed; run `make up`.")
    return StackFunctions(
        engine=create_engine(settings.postgres_url(load_secrets(settings)["RIPPLE_POSTGRES_PASSWORD"])),
        urls=urls,
        env=standin_addresses(settings).to_env(),
    )


def remove_rows(engine: Engine, sources: list[str]) -> str | None:
    """Delete the run's rows from events (every run has sources of its own); a sentence naming the
    sources when PostgreSQL could not be reached, else None."""
    try:
        with engine.begin() as connection:
            for source in sources:
                connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})
    except OperationalError:
        return f"could not delete the rows of {', '.join(sources)} from events"
    return None


@dataclass(frozen=True)
class Result:
    seconds: float
    overall: float
    steady: float
    cpu_ms_per_event: float


def run(
    path: Path,
    done: Callable[[int], int],
    total: int,
    env: dict[str, str],
    log: Path,
    profile: Path | None,
) -> Result:
    metrics_port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "knative_standins.kafkasource",
                str(path),
                "--metrics-port",
                str(metrics_port),
            ],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        with flame_graph(process.pid, profile, "--format", "flamegraph"):
            cpu = lambda: cpu_seconds(process.pid)  # noqa: E731
            progress = count_until(lambda: done(metrics_port), total, process, log, "done", reading=cpu)
    finally:
        process.terminate()
        process.wait(30)
    (_, c1), (_, c9) = progress.marks[0.1], progress.marks[0.9]
    return Result(
        seconds=progress.elapsed,
        overall=total / progress.elapsed,
        steady=progress.steady(total),
        cpu_ms_per_event=1000 * (c9 - c1) / (0.8 * total),
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument(
        "--store-events", type=int, default=None, help="events of the store path (default: --events)"
    )
    parser.add_argument("--paths", default="sink,store", help="comma-separated: sink, store, alerts")
    parser.add_argument("--modes", default="ordered,unordered", help="comma-separated: ordered, unordered")
    parser.add_argument("--max-in-flight", type=int, default=None, help="RIPPLE_DISPATCHER_MAX_IN_FLIGHT")
    parser.add_argument("--profile", type=Path, default=None, help="directory for py-spy flame graphs")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    # Stopped early (Ctrl-C, kill, or a background job's SIGINT): still remove topics and rows.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    paths = [p for p in arguments.paths.split(",") if p]
    modes = [m for m in arguments.modes.split(",") if m]
    settings = load_settings()
    try:
        functions = stack_functions(settings)
    except ConfigError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    engine, urls, env = functions.engine, functions.urls, dict(functions.env)
    if arguments.max_in_flight:
        env["RIPPLE_DISPATCHER_MAX_IN_FLIGHT"] = str(arguments.max_in_flight)
    if arguments.profile:
        arguments.profile.mkdir(parents=True, exist_ok=True)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ripple-bench")
    results: list[tuple[str, str, int, Result, str]] = []
    topics, sources = [], []
    try:
        with tempfile.TemporaryDirectory() as scratch, trivial_sink() as sink_url:
            sinks = {"sink": sink_url, "store": urls["event-store"], "alerts": urls["order-alerts"]}
            for path_name in paths:
                for ordering in modes:
                    topic = f"ripple.bench.{ordering}.{uuid.uuid4().hex[:8]}"
                    source = f"/bench/{ordering}/{uuid.uuid4().hex[:8]}"
                    admin.create_topics([NewTopic(topic, 3, 1)])
                    topics.append(topic)
                    sources.append(source)
                    path = manifest(Path(scratch), topic, ordering, sinks[path_name], urls["dead-letters"])
                    stack = (arguments, settings, engine, env)
                    results.append(dispatch_one(path_name, ordering, topic, source, path, *stack))
    finally:
        if topics:
            admin.delete_topics(topics)
        admin.close()
        failure = remove_rows(engine, sources)
        if failure:
            print(f"bench: {failure}", file=sys.stderr)
    print_table(results)
    return 0


def dispatch_one(
    path_name: str,
    ordering: str,
    topic: str,
    source: str,
    path: Path,
    arguments: argparse.Namespace,
    settings: Settings,
    engine: Engine,
    env: dict[str, str],
) -> tuple[str, str, int, Result, str]:
    """Pre-fill the topic, then dispatch all of it through one manifest: a row of the table."""
    events = arguments.events
    if path_name == "store" and arguments.store_events:
        events = arguments.store_events
    print(f"pre-filling {topic} with {events} events…", flush=True)
    prefill(settings.kafka_bootstrap, topic, source, events)

    def stored(_port: int) -> int:
        return stored_rows(engine, source)

    done = delivered if path_name in ("sink", "alerts") else stored
    print(f"dispatching ({path_name}, {ordering})…", flush=True)
    log = settings.log_dir / f"bench-dispatcher-{path_name}-{ordering}.log"
    profile = arguments.profile / f"{path_name}-{ordering}.svg" if arguments.profile else None
    result = run(path, done, events, env, log, profile)
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(
        f"  {result.steady:.0f} events/s steady, {result.cpu_ms_per_event:.3f} CPU ms/event "
        f"(load average {load})",
        flush=True,
    )
    return path_name, ordering, events, result, load


def print_table(results: list[tuple[str, str, int, Result, str]]) -> None:
    print()
    print(
        f"{'path':<6} {'mode':<10} {'events':>7} {'seconds':>8} {'events/s':>9} {'steady/s':>9} "
        f"{'CPU ms/event':>12}  load average"
    )
    for path_name, ordering, events, result, load in results:
        print(
            f"{path_name:<6} {ordering:<10} {events:>7} {result.seconds:>8.1f} "
            f"{result.overall:>9.0f} {result.steady:>9.0f} {result.cpu_ms_per_event:>12.3f}  {load}"
        )
    print(
        "sink: dispatcher -> nginx `return 202`; store: dispatcher -> event-store -> PostgreSQL; "
        "alerts: dispatcher -> order-alerts (orders below the threshold). "
        "CPU: the dispatcher process only, steady window."
    )


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-dispatcher"):
        sys.exit(main())
