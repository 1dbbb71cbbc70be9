"""CloudEvent -> row, and the idempotent insert.

The INSERT is written here, not built with SQLAlchemy's PostgreSQL
`insert().on_conflict_do_nothing()`: that construct has no cache key in SQLAlchemy 2.0 (its Insert
sets `inherit_cache = False`; the engine's log says "[no key]"), so every batch was compiled again,
and the JSONB type serialised `data` and `extensions` through its bind processors. Measured on the
stack's PostgreSQL with 25-row batches (issue 22's store path): 52-54 us of client CPU per row
through the construct, ~21 us written here. The statement still runs through SQLAlchemy's
Connection (`exec_driver_sql`: its pool, transaction and error translation: a row PostgreSQL
refuses is a DataError, a lost server an OperationalError); psycopg2 binds the values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ripple_consumer.rows import envelope_columns

# The columns written, in the order of each row's values (columns of event_store/schema.py's
# table, which the migrations create; a unit test checks the names).
COLUMNS = ("id", "source", "type", "subject", "tenant", "time", "data", "extensions")
_ROW_VALUES = "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"


class PermanentError(Exception):
    """The event can never be stored as it is (answered 422, so the dispatcher dead-letters it)."""


def _data(event: AnyCloudEvent) -> str:
    """The event's data as JSON text for the jsonb column, serialised as SQLAlchemy's JSONB type
    did (json.dumps; "null" when the event has none)."""
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        if not data:
            return "null"
        try:
            data = json.loads(data)
        except ValueError:
            raise PermanentError("the event data is not JSON; the events table stores JSON only") from None
    return json.dumps(data)


def _time(event: AnyCloudEvent) -> datetime | None:
    value = event.get("time")
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise PermanentError(f"the time attribute {value!r} is not an RFC 3339 timestamp") from None


def to_row(event: AnyCloudEvent) -> dict[str, Any]:
    """The event's COLUMNS, each value as insert_rows binds it (data and extensions JSON text)."""
    row = {**envelope_columns(event.get_attributes()), "time": _time(event), "data": _data(event)}
    row["extensions"] = json.dumps(row["extensions"])
    return row


def insert_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """INSERT ... ON CONFLICT (source, id) DO NOTHING of `rows` in one statement; the (source, id)
    of the rows inserted (an event already there is not returned)."""
    sql = (
        f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW_VALUES] * len(rows))} "
        "ON CONFLICT (source, id) DO NOTHING RETURNING source, id"
    )
    values = tuple(row[column] for row in rows for column in COLUMNS)
    return {(source, id_) for source, id_ in connection.exec_driver_sql(sql, values)}


def store(engine: Engine, row: dict[str, Any]) -> bool:
    """Insert once; False when (source, id) was already there (a redelivery)."""
    with engine.begin() as connection:
        return bool(insert_rows(connection, [row]))


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
            inserted = insert_rows(connection, ordered)
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
