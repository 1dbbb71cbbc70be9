"""dead-letters: the dead-letter sink of the KafkaSources.

Stores each dead-lettered event with Knative's error extensions (knativeerrordest,
knativeerrorcode, knativeerrordata) in the dead_letters table, once per (source, id, failed
sink). 503 while PostgreSQL is unreachable: the dispatcher then waits and retries, it never
drops a dead letter. `python replay.py` re-sends them to the sink that failed (see README).
"""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent
from dead_letters.config import Config
from dead_letters.store import store, to_row
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import abort_with_problem
from ripple_settings import or_exit

log = logging.getLogger("dead-letters")
CONFIG = or_exit("dead-letters", Config.from_env)
STORED = Counter("ripple_dead_letters_events", "Dead letters handled", ["outcome"])

engine = LazyEngine(CONFIG)


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    try:
        inserted = store(engine(), to_row(event))
    except SQLAlchemyError as error:
        # Whatever the database says, a dead letter must not be lost: always retryable.
        STORED.labels("database_unavailable").inc()
        log.warning(
            "storing dead letter %s/%s failed: %s", event["source"], event["id"], str(error).splitlines()[0]
        )
        abort_with_problem(
            503, "database-unavailable", "Database unavailable", "the dead letter was not stored"
        )
    log.warning(
        "dead letter %s/%s from %s (code %s)",
        event["source"],
        event["id"],
        event.get("knativeerrordest"),
        event.get("knativeerrorcode"),
    )
    STORED.labels("stored" if inserted else "duplicate").inc()
