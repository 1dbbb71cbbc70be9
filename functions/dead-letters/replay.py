"""Re-send dead letters to the sink that failed, then mark them replayed.

    python replay.py [--dest URL-substring] [--source SOURCE] [--limit N] [--to URL] [--dry-run]
                     [--include-handled]

Run in functions/dead-letters with the function's env (POSTGRES_*). Each event goes out in HTTP
binary mode without the knativeerror* extensions, to --to or else to its knativeerrordest;
an event the sink accepts (2xx) gets replayed_at set, a refused one stays for the next run.

Before sending, it says which events were already handled downstream (dead_letters/handled.py:
a flagged order already `sent` in notifications, an event already stored in events) and skips
them unless --include-handled, so an operator does not e-mail the fraud desk twice; a
notification left `pending` is replayed (the notifier resends the same message, same
Message-ID). Skipped letters stay unreplayed and are listed again by the next run.

Settings (environment):
- POSTGRES_* / DB_*: the dead_letters table and the tables checked (ripple_consumer/database.py);
- RIPPLE_PUSHGATEWAY_URL (default unset: nothing pushed): where the run's result goes, job
  `dead-letter-replay` (locally http://127.0.0.1:19091; in a cluster Job the monitoring stack's
  Pushgateway), shown in the Grafana overview's "Batch runs" row;
- REPLAY_SUBSCRIBERS (default none): `name=URL-prefix,...` naming the function behind a
  knativeerrordest URL whose host does not name it (locally
  `notifier=http://127.0.0.1:18405,event-store=http://127.0.0.1:18401`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping

import requests
from dead_letters.config import Config, ConfigError
from dead_letters.handled import already_handled, subscribers_from_env
from dead_letters.schema import dead_letters
from dead_letters.store import original_event
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from sqlalchemy import func, select, update

from ripple_cloudevents import to_binary_request
from ripple_consumer.database import make_engine

JOB = "dead-letter-replay"


def push_result(url: str, duration_s: float, passed: bool, counts: Mapping[str, float]) -> None:
    """The run's result to the Pushgateway (the series of ripple_stack/batch_runs.py, which the
    Grafana overview's "Batch runs" row shows); one that cannot be reached is a warning only."""
    registry = CollectorRegistry()
    Gauge("ripple_batch_last_run_timestamp_seconds", "When the run ended", registry=registry).set(time.time())
    Gauge("ripple_batch_duration_seconds", "How long the run took", registry=registry).set(duration_s)
    Gauge("ripple_batch_success", "1 when the run passed, 0 when it failed", registry=registry).set(
        1 if passed else 0
    )
    count = Gauge("ripple_batch_count", "Counts of the run (events, ...)", ["what"], registry=registry)
    for what, value in counts.items():
        count.labels(what=re.sub(r"[^A-Za-z0-9_]", "_", what)).set(value)
    try:
        push_to_gateway(url, job=JOB, registry=registry, timeout=5)
    except (OSError, ValueError) as error:
        print(f"warning: could not push the run's result to {url}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", help="only dead letters whose failed sink URL contains this")
    parser.add_argument("--source", help="only events with this CloudEvents source")
    parser.add_argument("--to", help="send to this URL instead of the failed sink")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--dry-run", action="store_true", help="list, do not send")
    parser.add_argument(
        "--include-handled",
        action="store_true",
        help="also send the events already handled downstream (e.g. already mailed)",
    )
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    try:
        engine = make_engine(Config.from_env())
        subscribers = subscribers_from_env(os.environ)
    except ConfigError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2
    query = select(dead_letters).where(dead_letters.c.replayed_at.is_(None)).order_by(dead_letters.c.seq)
    if arguments.dest:
        query = query.where(dead_letters.c.error_dest.contains(arguments.dest))
    if arguments.source:
        query = query.where(dead_letters.c.source == arguments.source)
    with engine.connect() as connection:
        rows = connection.execute(query.limit(arguments.limit)).all()
        handled = {
            row.seq: already_handled(connection, row, arguments.to or row.error_dest, subscribers)
            for row in rows
        }
    done = [row for row in rows if handled[row.seq].done]
    if done:
        action = "sent anyway (--include-handled)" if arguments.include_handled else "skipped"
        print(f"already handled downstream, {action}:")
        for row in done:
            print(f"  {row.seq}: {row.source}/{row.id} ({row.type}): {handled[row.seq].what}")
    sent = failed = skipped = 0
    session = requests.Session()
    for row in rows:
        target = arguments.to or row.error_dest
        if handled[row.seq].done and not arguments.include_handled:
            skipped += 1
            continue
        note = f"; {handled[row.seq].what}" if handled[row.seq].what else ""
        print(f"{row.seq}: {row.source}/{row.id} ({row.type}) -> {target} [was {row.error_code}]{note}")
        if arguments.dry_run:
            continue
        headers, body = to_binary_request(original_event(row))  # attribute values percent-encoded
        try:
            status = session.post(target, data=body, headers=headers, timeout=30).status_code
        except requests.RequestException as error:
            status, reason = None, str(error)
        else:
            reason = f"HTTP {status}"
        if status is not None and 200 <= status < 300:
            sent += 1
            with engine.begin() as connection:
                connection.execute(
                    update(dead_letters).where(dead_letters.c.seq == row.seq).values(replayed_at=func.now())
                )
        else:
            failed += 1
            print(f"  not accepted: {reason}", file=sys.stderr)
    print(f"{len(rows)} dead letters, {sent} replayed, {failed} refused, {skipped} skipped (already handled)")
    pushgateway = os.environ.get("RIPPLE_PUSHGATEWAY_URL", "")
    if pushgateway and not arguments.dry_run:
        counts = {"dead_letters": len(rows), "replayed": sent, "refused": failed, "skipped": skipped}
        push_result(pushgateway, time.monotonic() - started, not failed, counts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
