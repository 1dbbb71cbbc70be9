"""The notifier's CPU per notification in-process: `notify_once` against a real PostgreSQL and SMTP.

Issue 19: the notifier was the most CPU-hungry hop of the alert path (9.1 ms per notification in
the bursts, 4.7 ms of it in `notify_once`). This drives `notify_once` directly, one flagged order
after another on one thread, as the function's worker thread does (the outbox row, the row lock,
the mail on a kept-open SMTP connection, the row marked sent), and prints the process's CPU time
and the wall time per notification, and beside it the CPU the servers spent on each: the
PostgreSQL backend of the (one) pooled connection and the SMTP server's processes, when they run
on this machine (/proc). Without HTTP or the event loop, so a change to the outbox or
the mail shows alone; `--through asgi` posts binary-mode CloudEvents into the function's ASGI
app instead (main.py as it is served, without uvicorn's HTTP parsing: the app, the CloudEvent
decoding and the worker-thread hop on top). Compare builds run in turn with `--notifier-dir`
(e.g. a `git archive` of the commit before, unpacked under /tmp); `--profile` writes cProfile's
stats of the measured calls.

It needs a PostgreSQL with the notifier's tables (its migrations) and an SMTP server, both on
loopback, from the same variables as the function (POSTGRES_ADDRESS, POSTGRES_PASSWORD, ...,
SMTP_SERVER). The stack's are fine when you hold the heavy lock; without it, a throwaway
PostgreSQL from the stack's binaries (/usr/lib/postgresql/15/bin; as root, run initdb and postgres
as the postgres user) and the stack's mail sink, on private ports:

    initdb -D /tmp/n/data -U ripple --auth=trust
    postgres -D /tmp/n/data -p 25432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp/n
    createdb -h 127.0.0.1 -p 25432 -U ripple ripple
    PYTHONPATH=infra/local .venv/bin/python -m ripple_stack.mailsink --port 25025 \\
        --metrics-port 25026 --dir /tmp/n/mail
    export POSTGRES_ADDRESS=127.0.0.1:25432 POSTGRES_PASSWORD=x SMTP_SERVER=127.0.0.1:25025
    (cd functions/notifier && FRAUD_DESK_ADDRESS=d@x.invalid ../../.venv/bin/python -c \\
        'import sys, pathlib; sys.path[:0] = [".", ".."]; from ripple_consumer.serve import migrate
        migrate(pathlib.Path("."))')
    .venv/bin/python -m loadtest.broker.notify_cpu [--notifications 2000] [--through asgi] [--profile p]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.measure import (
    TICK_S,
    asgi_post,
    bench_event_attributes,
    binary_event_headers,
    own_ticks,
    processes_on_port,
    timed_call,
)

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


ORDER = {"amount": 5000, "currency": "EUR", "reason": "amount above 1000"}
SOURCE = "/loadtest/notify-cpu"


def attributes(order_id: str) -> dict[str, str]:
    return bench_event_attributes("dev.ripple.shop.order.flagged", SOURCE)


# A driver: (prepare, engine). prepare(order ids) builds the deliveries of those orders and returns
# what sends them all, so that building them is not measured.
Driver = tuple[Callable[[list[str]], Callable[[], None]], Any]


def direct() -> Driver:
    """notify_once called with each event, as the function's worker thread calls it."""
    from cloudevents.http import CloudEvent
    from notifier.config import Config
    from notifier.notify import MAILED, Unrecorded, notify_once

    from ripple_consumer.database import make_engine

    config = Config.from_env()
    engine = make_engine(config)
    unrecorded = Unrecorded(lambda: engine)

    def prepare(order_ids: list[str]) -> Callable[[], None]:
        # As the handler gets them from the HTTP binding: JSON data parsed into a dict.
        events = [CloudEvent(attributes(o), ORDER | {"orderId": o}) for o in order_ids]

        def run() -> None:
            for event in events:
                assert notify_once(engine, event, config, unrecorded).outcome == MAILED

        return run

    return prepare, engine


def through_asgi(notifier_dir: Path) -> Driver:
    """Binary-mode POSTs into the function's ASGI app, one after another."""
    from ripple_consumer.http import create_app

    app = create_app(str(notifier_dir / "main.py"))
    statuses: list[int] = []

    def prepare(order_ids: list[str]) -> Callable[[], None]:
        requests = []
        for order_id in order_ids:
            body = json.dumps(ORDER | {"orderId": order_id}).encode()
            requests.append((binary_event_headers("notifier", attributes(order_id), body), body))

        async def post_all() -> None:
            for headers, body in requests:
                statuses.append(await asgi_post(app, headers, body))

        def run() -> None:
            asyncio.run(post_all())
            assert set(statuses) == {200}, set(statuses)
            statuses.clear()

        return run

    return prepare, sys.modules["main"].engine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=2000, help="measured calls")
    parser.add_argument("--warmup", type=int, default=50, help="calls before measuring (pools, caches)")
    parser.add_argument("--through", choices=["notify_once", "asgi"], default="notify_once")
    parser.add_argument(
        "--notifier-dir",
        type=Path,
        default=FUNCTIONS / "notifier",
        help="functions/notifier of the build to measure (its shared packages come from functions/)",
    )
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the measured calls here")
    parser.add_argument("--label", default="", help="printed with the result")
    args = parser.parse_args()
    sys.path[:0] = [str(args.notifier_dir), str(FUNCTIONS)]
    os.environ.setdefault("FRAUD_DESK_ADDRESS", "desk@test.invalid")
    run_id = uuid.uuid4().hex[:8]
    warmup = [f"o-{run_id}-warmup-{index}" for index in range(args.warmup)]
    measured = [f"o-{run_id}-{index}" for index in range(args.notifications)]
    if args.through == "asgi":
        logging.disable(logging.INFO)  # the function's request log: not what is measured
        prepare, engine = through_asgi(args.notifier_dir)
    else:
        prepare, engine = direct()
    prepare(warmup)()
    run = prepare(measured)
    # One thread: the pool hands out the same connection every time, so one backend does the work.
    with engine.connect() as connection:
        postgres_pids = [connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()]
    from notifier.config import Config

    smtp_pids = processes_on_port(Config.from_env().smtp_port)
    server_ticks = own_ticks(postgres_pids), own_ticks(smtp_pids)
    cpu, wall = timed_call(run, args.profile)
    postgres_ms, smtp_ms = (
        (own_ticks(pids) - before) * TICK_S / args.notifications * 1000
        for pids, before in zip((postgres_pids, smtp_pids), server_ticks, strict=True)
    )
    load = os.getloadavg()
    print(
        f"{args.label or args.notifier_dir} through {args.through}: {args.notifications} notifications, "
        f"CPU {cpu / args.notifications * 1000:.3f} ms, wall {wall / args.notifications * 1000:.3f} ms "
        f"per notification{' (under cProfile)' if args.profile else ''}; servers' CPU per notification: "
        f"PostgreSQL backend {postgres_ms:.3f} ms, SMTP server {smtp_ms:.3f} ms"
        f"{'' if smtp_pids else ' (not on this machine)'}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
