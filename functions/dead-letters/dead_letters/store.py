"""Dead-lettered CloudEvent -> row (idempotent on source, id and the sink that failed), and back."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cloudevents.abstract import AnyCloudEvent
from cloudevents.http import CloudEvent
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert

from ripple_consumer.rows import envelope_columns

from .schema import dead_letters

ERROR_EXTENSIONS = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")


def _data_bytes(event: AnyCloudEvent) -> bytes | None:
    data = event.get_data()
    if data is None or isinstance(data, bytes):
        return data
    return json.dumps(data).encode()


def _error_data(encoded: str | None) -> str | None:
    # Knative base64-encodes the failed sink's response body (at most 1 KiB).
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return encoded


def to_row(event: AnyCloudEvent) -> dict[str, Any]:
    attributes = event.get_attributes()
    return {
        **envelope_columns(attributes),
        "time": attributes.get("time"),
        "datacontenttype": attributes.get("datacontenttype"),
        "data": _data_bytes(event),
        "error_dest": attributes.get("knativeerrordest") or "unknown",
        "error_code": attributes.get("knativeerrorcode"),
        "error_data": _error_data(attributes.get("knativeerrordata")),
    }


def store(engine: Engine, row: dict[str, Any]) -> bool:
    statement = (
        insert(dead_letters)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["source", "id", "error_dest"])
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


def original_event(row: Any) -> CloudEvent:
    """The event as it was before it failed: the knativeerror* extensions removed."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": row.id,
        "source": row.source,
        "type": row.type,
        **{k: v for k, v in row.extensions.items() if k not in ERROR_EXTENSIONS},
    }
    for name in ("subject", "time", "datacontenttype"):
        if getattr(row, name) is not None:
            attributes[name] = getattr(row, name)
    event = CloudEvent(attributes, row.data)
    if row.time is None and "time" in event:
        del event["time"]
    return event
