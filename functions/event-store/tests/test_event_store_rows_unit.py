"""event_store.store without a server: what a CloudEvent becomes in the row (data as the JSON text
the jsonb column is given, as SQLAlchemy's JSONB type wrote it), and that the INSERT writes columns
of the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from event_store.schema import events
from event_store.store import COLUMNS, PermanentError, to_row

ATTRIBUTES = {"id": "e-1", "source": "/s", "type": "t", "specversion": "1.0"}


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"amount": 12.5, "items": [1, 2]}, '{"amount": 12.5, "items": [1, 2]}'),  # as the SDK parsed it
        (b"", "null"),
        (None, "null"),
        (b'{"a": "\u00e9"}', '{"a": "\\u00e9"}'),  # bytes the SDK left alone, if JSON, are parsed
        ("text", '"text"'),
    ],
)
def test_data_becomes_the_json_text_of_the_jsonb_column(data, text):
    row = to_row(CloudEvent(ATTRIBUTES, data))
    assert row["data"] == text
    assert json.loads(row["data"]) == json.loads(text)


def test_data_that_is_not_json_is_a_permanent_error():
    with pytest.raises(PermanentError, match="not JSON"):
        to_row(CloudEvent(ATTRIBUTES, b"not json"))


def test_the_insert_writes_columns_of_the_table():
    assert set(COLUMNS) <= set(events.c.keys())
    assert len(set(COLUMNS)) == len(COLUMNS)
