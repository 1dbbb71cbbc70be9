"""dead-letters: the dead-letter sink of the KafkaSources.

Stores each dead-lettered event with Knative's error extensions (knativeerrordest,
knativeerrorcode, knativeerrordata) in the dead_letters table, once per (source, id, failed
sink). 503 while PostgreSQL is unreachable: the dispatcher then waits and retries, it never
drops a dead letter. `python replay.py` re-sends them to the sink that failed (see README).

An asynchronous function (ripple_server.aio, no Flask: ~100 ms less of every cold start, issue
22); the blocking INSERT runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging

from cloudevents.http import CloudEvent
from dead_letters.config import Config
from dead_letters.store import store, to_row
from prometheus_client import Counter
from ripple_server import aio
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import problem
from ripple_settings import or_exit

log = logging.getLogger("dead-letters")
CONFIG = or_exit("dead-letters", Config.from_env)
STORED = Counter("ripple_dead_letters_events", "Dead letters handled", ["outcome"])

engine = LazyEngine(CONFIG)


@aio.cloud_event
async def handle(event: CloudEvent) -> None:
    await asyncio.to_thread(store_dead_letter, event)


def store_dead_letter(event: CloudEvent) -> None:
    try:
        inserted = store(engine(), to_row(event))
    except SQLAlchemyError as error:
        # Whatever the database says, a dead letter must not be lost: always retryable.
        STORED.labels("database_unavailable").inc()
        log.warning(
            "storing dead letter %s/%s failed: %s", event["source"], event["id"], str(error).splitlines()[0]
        )
        raise problem(
            503, "database-unavailable", "Database unavailable", "the dead letter was not stored"
        ) from None
    log.warning(
        "dead letter %s/%s from %s (code %s)",
        event["source"],
        event["id"],
        event.get("knativeerrordest"),
        event.get("knativeerrorcode"),
    )
    STORED.labels("stored" if inserted else "duplicate").inc()
