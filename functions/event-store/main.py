"""event-store: a CloudEvent function storing every event in PostgreSQL exactly once.

Answers 2xx once the event is stored (or was already: redelivery is a no-op on (source, id)),
committed together with the events of concurrent deliveries (ripple_consumer.group_commit),
503 when PostgreSQL cannot be reached (the dispatcher retries), 422 only for events that can
never be stored (data that is not JSON, a malformed time).

An asynchronous function (ripple_server.aio: Starlette without Flask, served by uvicorn): a
delivery is a coroutine waiting for its commit, not a thread, so a KafkaSource's whole in-flight
window costs nothing while it waits, and the HTTP stack costs ~0.1 ms of CPU per event instead
of Flask's ~0.5 ms.
"""

from __future__ import annotations

import logging
import time

from cloudevents.http import CloudEvent
from event_store.config import Config
from event_store.store import PermanentError, store_many, to_row
from prometheus_client import Counter, Histogram
from ripple_server import aio
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ripple_consumer.database import LazyEngine
from ripple_consumer.group_commit import GroupCommit
from ripple_consumer.http import problem
from ripple_settings import or_exit

log = logging.getLogger("event-store")
CONFIG = or_exit("event-store", Config.from_env)
STORED = Counter("ripple_event_store_events", "Events handled by event-store", ["outcome"])
BATCH_ROWS = Histogram(
    "ripple_event_store_batch_rows",
    "Events per INSERT and COMMIT (concurrent deliveries share one: group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

# The dashboard's "Event -> row delay": from the event's own time to its row's commit.
DELAY = Histogram(
    "ripple_event_store_delay_seconds",
    "From an event's time attribute to event-store committing its row (first stores only)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)

engine = LazyEngine(CONFIG)
# Concurrent deliveries share one INSERT and one commit; each is answered after its own row's.
STORE = GroupCommit(
    lambda db, rows: BATCH_ROWS.observe(len(rows)) or store_many(db, rows),
    max_rows=CONFIG.batch_max_rows,
    max_flushes=CONFIG.concurrent_writes,
)


@aio.cloud_event
async def handle(event: CloudEvent) -> None:
    try:
        row = to_row(event)
        inserted = await STORE.submit(engine(), row)
    except PermanentError as error:
        STORED.labels("rejected").inc()
        raise problem(422, "unstorable-event", "Event cannot be stored", str(error)) from None
    except DataError as error:
        STORED.labels("rejected").inc()
        detail = str(error.orig).strip()
        raise problem(422, "unstorable-event", "Event cannot be stored", detail) from None
    except (OperationalError, PoolTimeoutError) as error:
        STORED.labels("database_unavailable").inc()
        log.warning("PostgreSQL unavailable: %s", str(error).splitlines()[0])
        raise problem(
            503, "database-unavailable", "Database unavailable", "PostgreSQL cannot be reached"
        ) from None
    except (DBAPIError, SQLAlchemyError) as error:
        STORED.labels("database_error").inc()
        log.error("storing %s/%s failed: %s", event["source"], event["id"], str(error).splitlines()[0])
        raise problem(503, "database-error", "Database error", "the event could not be stored") from None
    STORED.labels("stored" if inserted else "duplicate").inc()
    if inserted and row["time"] is not None and row["time"].tzinfo is not None:
        DELAY.observe(max(0.0, time.time() - row["time"].timestamp()))
