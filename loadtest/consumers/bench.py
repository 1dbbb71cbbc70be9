"""Throughput and CPU cost of the consumer functions alone (no dispatcher): wrk POSTs binary-mode
CloudEvents straight to the running function, as a KafkaSource dispatcher delivers them.

    .venv/bin/python -m loadtest.consumers.bench [--functions event-store,order-alerts]
        [--connections 3,64] [--duration 15] [--amount 9.5] [--profile DIR]
    make bench-consumers

`--connections 3` is what the ordered path offers (3 partitions, one event at a time each);
64 is an unordered dispatcher's window. For each function and concurrency it prints req/s,
p50/p99 and the function's CPU ms per event (user+system of its gunicorn processes, /proc), with
the load average; for event-store it also checks that every 2xx answer left exactly one row (the
run's rows are deleted afterwards). When the local activator fronts the function (its instances
are then children of the process on the port), its own CPU is shown apart ("proxy ms").
`--profile DIR` records a py-spy flame graph of each run (DIR/<function>-c<connections>.svg).
Needs the stack (`make up`) and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from loadtest import measure
from ripple_stack.components.functions import knative_functions
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import load_settings

SCRIPT = Path(__file__).resolve().parent / "events.lua"


def run_wrk(url: str, connections: int, args: argparse.Namespace, run_id: str) -> dict:
    env = {"RUN_ID": run_id, "AMOUNT": args.amount}
    return measure.run_wrk(
        SCRIPT, url, threads=min(2, connections), connections=connections, duration_s=args.duration, env=env
    )


COLUMNS = (
    "function",
    "conc.",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "CPU ms/ev",
    "proxy ms",
    "rows ok",
    "load",
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", default="event-store,order-alerts")
    parser.add_argument("--connections", default="3,64", help="concurrent requests, comma separated")
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--amount", default="9.5", help="order amount (order-alerts alerts above 1000)")
    parser.add_argument("--profile", type=Path, help="folder for py-spy flame graphs (SVG)")
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another instance to measure too, e.g. event-store-old=http://127.0.0.1:18981 (a name "
        "starting with event-store gets the row check); repeatable",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the targets in turn (A/B/A/B...)")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make up` (it installs the Debian package).")
    settings = load_settings()
    functions = {f.name: f for f in knative_functions()}
    engine = create_engine(settings.postgres_url(load_secrets(settings)["RIPPLE_POSTGRES_PASSWORD"]))
    print(f"wrk -d{args.duration}s, binary-mode order.placed events (amount {args.amount}) to the function")
    print(f"{COLUMNS[0]:<13}" + "".join(f"{c:>11}" for c in COLUMNS[1:]))
    urls = {name: functions[name].url(settings) for name in args.functions.split(",") if name}
    urls.update(item.split("=", 1) for item in args.url)
    concurrencies = [int(c) for c in args.connections.split(",")]
    runs = [(name, c) for c in concurrencies for name in urls] * args.rounds
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    for name, connections in runs:
        cells = measure_one(name, urls[name], connections, args, engine)
        print(f"{name:<13}" + "".join(f"{c:>11}" for c in cells), flush=True)
    engine.dispose()


def measure_one(name: str, url: str, connections: int, args: argparse.Namespace, engine: Engine) -> tuple:
    """One wrk run against one function: the row of the table, from conc. to load."""
    port = measure.port_of(url)
    pids = measure.processes_on_port(port)
    if not pids:
        sys.exit(f"nothing listens on {port} for {name}: start it (make up, make start-<name>).")
    run_id = f"{name}-c{connections}-{time.time_ns()}"
    profile = args.profile / f"{name}-c{connections}.svg" if args.profile is not None else None
    with measure.flame_graph(min(pids), profile, "--subprocesses", "--nonblocking"):
        # The process on the port: gunicorn's master, or the activator in front of instances.
        before, before_proxy = measure.function_cpu_seconds(port) or (0.0, 0.0)
        result = run_wrk(url, connections, args, run_id)
        after, after_proxy = measure.function_cpu_seconds(port) or (before, before_proxy)
    proxy, cpu = after_proxy - before_proxy, after - before
    ok = result["requests"] - result["non_2xx"]
    rows = "-"
    if name.startswith("event-store"):
        source = f"/loadtest/consumers/{run_id}"
        with engine.begin() as connection:
            stored = connection.execute(
                text("SELECT count(*) FROM events WHERE source = :s"), {"s": source}
            ).scalar_one()
            connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})
        # wrk stops mid-request: an answer it never read may still have stored its row.
        rows = "yes" if ok <= stored <= result["requests"] + connections else f"{stored}/{ok}"
    seconds = result["duration_us"] / 1e6
    return (
        str(connections),
        f"{result['requests'] / seconds:.0f}",
        f"{result['p50_us'] / 1000:.1f}",
        f"{result['p99_us'] / 1000:.1f}",
        str(result["non_2xx"] + result["socket_errors"]),
        f"{1000 * cpu / max(ok, 1):.2f}",
        f"{1000 * proxy / max(ok, 1):.2f}" if after_proxy else "-",  # no activator in front
        rows,
        f"{os.getloadavg()[0]:.1f}",
    )


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-consumers"):
        main()
