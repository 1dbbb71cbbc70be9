"""Re-send dead letters to the sink that failed, then mark them replayed.

    python replay.py [--dest URL-substring] [--source SOURCE] [--limit N] [--to URL] [--dry-run]

Run in functions/dead-letters with the function's env (POSTGRES_*). Each event goes out in HTTP
binary mode without the knativeerror* extensions, to --to or else to its knativeerrordest;
an event the sink accepts (2xx) gets replayed_at set, a refused one stays for the next run.
Consumers are idempotent on (source, id), so replaying twice is harmless.
"""

from __future__ import annotations

import argparse
import sys
import time

import requests
from dead_letters.config import Config, ConfigError
from dead_letters.schema import dead_letters
from dead_letters.store import original_event
from sqlalchemy import func, select, update

from ripple_cloudevents import to_binary_request
from ripple_consumer.database import make_engine

try:  # the local stack's helper (run from the repository); the function's image has no Pushgateway
    from ripple_stack.batch_runs import push_run
except ImportError:
    push_run = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", help="only dead letters whose failed sink URL contains this")
    parser.add_argument("--source", help="only events with this CloudEvents source")
    parser.add_argument("--to", help="send to this URL instead of the failed sink")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--dry-run", action="store_true", help="list, do not send")
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    try:
        engine = make_engine(Config.from_env())
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
    sent = failed = 0
    session = requests.Session()
    for row in rows:
        target = arguments.to or row.error_dest
        print(f"{row.seq}: {row.source}/{row.id} ({row.type}) -> {target} [was {row.error_code}]")
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
    print(f"{len(rows)} dead letters, {sent} replayed, {failed} refused")
    if push_run is not None and not arguments.dry_run:
        counts = {"dead_letters": len(rows), "replayed": sent, "refused": failed}
        duration_s = time.monotonic() - started
        push_run("dead-letter-replay", duration_s=duration_s, passed=not failed, counts=counts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
