"""CloudEvent -> row, and the idempotent insert."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ripple_consumer.rows import envelope_columns

from .schema import events


class PermanentError(Exception):
    """The event can never be stored as it is (answered 422, so the dispatcher dead-letters it)."""


def _data(event: AnyCloudEvent) -> Any:
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise PermanentError("the event data is not JSON; the events table stores JSON only") from None
    return data


def _time(event: AnyCloudEvent) -> datetime | None:
    value = event.get("time")
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise PermanentError(f"the time attribute {value!r} is not an RFC 3339 timestamp") from None


def to_row(event: AnyCloudEvent) -> dict[str, Any]:
    return {**envelope_columns(event.get_attributes()), "time": _time(event), "data": _data(event)}


def store(engine: Engine, row: dict[str, Any]) -> bool:
    """Insert once; False when (source, id) was already there (a redelivery)."""
    statement = insert(events).values(**row).on_conflict_do_nothing(index_elements=["source", "id"])
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


# executemany with RETURNING: SQLAlchemy renders one multi-row INSERT ... VALUES per batch
# ("insertmanyvalues") and caches the compiled statement.
_STORE_MANY = (
    insert(events)
    .on_conflict_do_nothing(index_elements=["source", "id"])
    .returning(events.c.source, events.c.id)
)


def store_many(engine: Engine, rows: Sequence[dict[str, Any]]) -> list[bool | Exception]:
    """Insert rows once each in one transaction; per row True (inserted) or False (already there).

    When the batch fails for a reason other than the connection (a row PostgreSQL refuses), each
    row is retried in a transaction of its own, so only the bad row gets the error.
    """
    # Every batch inserts in (source, id) order: two batches that hold the same events (a
    # redelivery while the first delivery is still in flight, possibly in another instance)
    # then wait for each other in one direction only, never deadlock.
    ordered = sorted(rows, key=lambda row: (row["source"], row["id"]))
    try:
        with engine.begin() as connection:
            inserted = {tuple(key) for key in connection.execute(_STORE_MANY, ordered)}
    except (OperationalError, PoolTimeoutError):
        raise  # nothing can be written now: every request of the batch answers 503
    except DBAPIError:
        if len(rows) == 1:
            raise
        return [_store_alone(engine, row) for row in rows]
    outcomes: list[bool | Exception] = []
    for row in rows:
        key = (row["source"], row["id"])
        outcomes.append(key in inserted)
        inserted.discard(key)  # the same event twice in one batch: the second is the duplicate
    return outcomes


def _store_alone(engine: Engine, row: dict[str, Any]) -> bool | Exception:
    try:
        return store(engine, row)
    except DBAPIError as error:
        return error
