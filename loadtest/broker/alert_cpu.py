"""order-alerts' CPU per flagged order in-process: `raise_alert` against real PostgreSQL, Kafka, Broker.

Issue 19: order-alerts was the largest CPU consumer of the bursts (96.5 CPU-s for 17,528 flagged
orders, ~5.5 ms each) and the first long hop of the order -> notification delay. This drives the
function's `raise_alert` directly, one flagged order after another on one thread, as its worker
thread does (the alert row, the alert to Kafka with acks=all and to the Broker, both awaited, the
row marked emitted), and prints the process's CPU time and wall time per alert, and beside it the
CPU the PostgreSQL backends and the Broker stand-in spent on each. `--through asgi` posts binary-mode
CloudEvents into the function's ASGI app instead (main.py as it is served, without uvicorn's HTTP
parsing: the app, the CloudEvent decoding and the worker-thread hop on top), `--in-flight N` of them
at once as the KafkaSource's unordered dispatch sends them (the worker threads then share the
producer, the pool and the Broker client). Compare builds run in
turn with `--function-dir` (e.g. functions/order-alerts of a `git worktree` of the commit before);
`--profile` writes cProfile's stats of the measured calls.

The Broker is a small HTTP server started here in a process of its own (HTTP/1.1, kept alive,
answering 202 to every POST), so its CPU is not the function's. Kafka is the stack's (KAFKA_PORT,
19092), on a private topic created for the run and deleted after it: hold the heavy lock while this
runs. PostgreSQL: a throwaway one from the stack's binaries (as root, run them as the postgres
user), with order-alerts' migrations:

    initdb -D /tmp/oa/data -U ripple --auth=trust
    postgres -D /tmp/oa/data -p 26432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp/oa/run
    createdb -h 127.0.0.1 -p 26432 -U ripple ripple
    export POSTGRES_ADDRESS=127.0.0.1:26432 POSTGRES_PASSWORD=x
    (cd functions/order-alerts && ../../.venv/bin/python -c \\
        'import sys, pathlib; sys.path[:0] = [".", ".."]; from ripple_consumer.serve import migrate
        migrate(pathlib.Path("."))')
    .venv/bin/python -m loadtest.broker.alert_cpu [--alerts 2000] [--through asgi [--in-flight 16]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.measure import (
    TICK_S,
    asgi_post,
    bench_event_attributes,
    binary_event_headers,
    free_port,
    own_ticks,
    timed_call,
)

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
SOURCE = "/loadtest/alert-cpu"

# The Broker stand-in: every POST answered 202 on a kept-alive HTTP/1.1 connection, body read.
BROKER_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response_only(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Accept).serve_forever()
"""


def thread_ticks() -> dict[str, int]:
    """Clock ticks (user + system) this process's threads have used, summed by thread name
    (librdkafka names its threads rdk:main, rdk:broker..., kafka-python its sender thread)."""
    by_name: dict[str, int] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        name = "rdk:broker" if name.startswith("rdk:broker") else name
        by_name[name] = by_name.get(name, 0) + int(fields[11]) + int(fields[12])
    return by_name


def attributes(order_id: str) -> dict[str, str]:
    return bench_event_attributes("dev.ripple.shop.order.placed", SOURCE, partitionkey=f"acme/{order_id}")


def order(order_id: str) -> dict[str, Any]:
    return {"orderId": order_id, "customerId": "c-1", "amount": 2500.0, "currency": "EUR"}


# A driver: prepare(order ids) builds the deliveries of those orders and returns what handles them
# all, so that building them is not measured.
Driver = Callable[[list[str]], Callable[[], None]]


def direct() -> Driver:
    """raise_alert called with each event, as the function's worker thread calls it."""
    from cloudevents.http import CloudEvent

    raise_alert = sys.modules["main"].raise_alert

    def prepare(order_ids: list[str]) -> Callable[[], None]:
        # As the handler gets them from the HTTP binding: JSON data parsed into a dict.
        events = [CloudEvent(attributes(o), order(o)) for o in order_ids]

        def run() -> None:
            for event in events:
                raise_alert(event)

        return run

    return prepare


def through_asgi(app: Any, in_flight: int) -> Driver:
    """Binary-mode POSTs into the function's ASGI app, `in_flight` at a time (1: one after another)."""
    statuses: list[int] = []

    def prepare(order_ids: list[str]) -> Callable[[], None]:
        requests = []
        for order_id in order_ids:
            body = json.dumps(order(order_id)).encode()
            requests.append((binary_event_headers("order-alerts", attributes(order_id), body), body))

        async def post_all() -> None:
            # As the KafkaSource's unordered dispatch keeps many deliveries in flight: the worker
            # threads (asyncio.to_thread's pool) then share one producer, pool and Broker client.
            pending = iter(requests)

            async def poster() -> None:
                for headers, body in pending:
                    statuses.append(await asgi_post(app, headers, body))

            await asyncio.gather(*(poster() for _ in range(in_flight)))

        def run() -> None:
            asyncio.run(post_all())
            assert set(statuses) == {200}, set(statuses)
            statuses.clear()

        return run

    return prepare


def emitted(engine: Any, order_ids: list[str]) -> int:
    """How many of these orders have an alert row marked emitted."""
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM order_alerts WHERE tenant = 'acme' AND order_id = ANY(:ids)"
                " AND emitted_at IS NOT NULL"
            ),
            {"ids": order_ids},
        ).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000, help="measured flagged orders")
    parser.add_argument("--warmup", type=int, default=50, help="alerts before measuring (pools, caches)")
    parser.add_argument("--through", choices=["raise_alert", "asgi"], default="raise_alert")
    parser.add_argument(
        "--in-flight", type=int, default=1, help="with --through asgi: requests in flight at once"
    )
    parser.add_argument(
        "--function-dir",
        type=Path,
        default=FUNCTIONS / "order-alerts",
        help="functions/order-alerts of the build to measure (its shared packages come from its parent)",
    )
    parser.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('RIPPLE_KAFKA_PORT', '19092')}")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the measured calls here")
    parser.add_argument("--label", default="", help="printed with the result")
    args = parser.parse_args()
    function_dir = args.function_dir.resolve()
    sys.path[:0] = [str(function_dir), str(function_dir.parent)]
    run_id = uuid.uuid4().hex[:8]
    topic = f"ripple.loadtest.alert-cpu.{run_id}"

    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.kafka})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    broker_port = free_port()
    broker = subprocess.Popen([sys.executable, "-c", BROKER_SINK, str(broker_port)])
    time.sleep(0.5)
    os.environ.update(
        KAFKA_BOOTSTRAP_SERVERS=args.kafka,
        ALERT_TOPIC=topic,
        ALERT_THRESHOLD="1000",
        BROKER_URL=f"http://127.0.0.1:{broker_port}/",
    )
    try:
        logging.disable(logging.INFO)  # the function's request log: not what is measured
        if args.through == "asgi":
            from ripple_consumer.http import create_app

            prepare = through_asgi(create_app(str(function_dir / "main.py")), args.in_flight)
        else:
            from ripple_server.aio import load_app

            load_app(str(function_dir / "main.py"), "handle")
            prepare = direct()
        engine = sys.modules["main"].engine()
        warmup = [f"o-{run_id}-warmup-{index}" for index in range(args.warmup)]
        measured = [f"o-{run_id}-{index}" for index in range(args.alerts)]
        prepare(warmup)()
        run = prepare(measured)
        # The backends of the function's pooled connections (the warm-up opened them, this one is
        # one of them): every client backend of the database, hence a PostgreSQL of its own (above).
        with engine.connect() as connection:
            postgres_pids = list(
                connection.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND backend_type = 'client backend'"
                ).scalars()
            )
        server_ticks = own_ticks(postgres_pids), own_ticks([broker.pid])
        threads_before = thread_ticks()
        cpu, wall = timed_call(run, args.profile)
        threads = {
            name: (used - threads_before.get(name, 0)) * TICK_S / args.alerts * 1000
            for name, used in thread_ticks().items()
        }
        postgres_ms, broker_ms = (
            (own_ticks(pids) - before) * TICK_S / args.alerts * 1000
            for pids, before in zip((postgres_pids, [broker.pid]), server_ticks, strict=True)
        )
        done = emitted(engine, measured)
        assert done == args.alerts, f"{done} of {args.alerts} alerts marked emitted"
        load = os.getloadavg()
        print(
            f"{args.label or function_dir} through {args.through}"
            f"{f' ({args.in_flight} in flight)' if args.through == 'asgi' else ''}: {args.alerts} alerts, "
            f"CPU {cpu / args.alerts * 1000:.3f} ms, wall {wall / args.alerts * 1000:.3f} ms "
            f"per alert{' (under cProfile)' if args.profile else ''}; servers' CPU per alert: "
            f"PostgreSQL backends ({len(postgres_pids)}) {postgres_ms:.3f} ms, "
            f"Broker stand-in {broker_ms:.3f} ms; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        busiest = sorted(threads.items(), key=lambda item: -item[1])
        print(
            "  its threads' CPU per alert (those alive at the end): "
            + ", ".join(f"{n} {ms:.3f} ms" for n, ms in busiest if ms > 0)
        )
    finally:
        broker.terminate()
        broker.wait()
        admin.delete_topics([topic])[topic].result(timeout=30)


if __name__ == "__main__":
    main()
