"""CloudEvent -> row, and the idempotent insert."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert

from .schema import events

CORE_ATTRIBUTES = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}


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
    attributes = event.get_attributes()
    return {
        "id": attributes["id"],
        "source": attributes["source"],
        "type": attributes["type"],
        "subject": attributes.get("subject"),
        "tenant": attributes.get("tenant"),
        "time": _time(event),
        "data": _data(event),
        "extensions": {k: v for k, v in attributes.items() if k not in CORE_ATTRIBUTES},
    }


def store(engine: Engine, row: dict[str, Any]) -> bool:
    """Insert once; False when (source, id) was already there (a redelivery)."""
    statement = insert(events).values(**row).on_conflict_do_nothing(index_elements=["source", "id"])
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1
