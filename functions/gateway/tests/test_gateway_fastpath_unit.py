"""The gateway's fast paths produce exactly what the SDK and the standard library produce.

The binary-mode event is built without the cloudevents SDK's from_http, the Kafka headers
without its to_binary, JSON is read with orjson (loadtest/gateway/profiles/README.md): each is
compared here with the path it replaced, on the inputs where they could differ.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.http import from_dict, from_http
from cloudevents.kafka import to_binary

from ripple_auth import Problem
from ripple_events import load_catalog
from ripple_gateway import events

ORDER = (
    b'{"orderId":"o-1","customerId":"c-1","items":[{"sku":"s","quantity":1,"unitPrice":2}],'
    b'"amount":2,"currency":"EUR"}'
)
BASE = {
    "ce-specversion": "1.0",
    "ce-id": "e-1",
    "ce-source": "/s",
    "ce-type": "dev.ripple.shop.order.placed",
}
NOW = "2026-01-01T00:00:00.000000Z"


def sdk_record(headers: dict[str, str], body: bytes) -> tuple[list[str], list[tuple[str, bytes]]]:
    """What the gateway made of a binary request before the fast path: from_http, to_binary."""
    [incoming] = events.parse_request(headers, body, 500)
    content_type = headers.get("Content-Type") or events.JSON
    attributes = {name[3:]: value for name, value in headers.items() if name.lower().startswith("ce-")}
    event = from_http(
        {"content-type": content_type, **{f"ce-{name}": value for name, value in attributes.items()}},
        body,
        data_unmarshaller=lambda raw: raw,
    )
    entry = load_catalog().get(event["type"])
    return as_published(event, entry.partition_key_of(incoming.data, "acme"), "time" in attributes)


def as_published(event: Any, key: str, has_time: bool) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The SDK event's attribute names and Kafka headers once the gateway adds what it adds."""
    event["tenant"] = "acme"
    event["partitionkey"] = key
    if not has_time:
        event["time"] = NOW
    if not event.get("datacontenttype"):
        event["datacontenttype"] = events.JSON
    message = to_binary(event, data_marshaller=lambda data: data)
    return list(event.get_attributes()), [*message.headers.items(), ("ce_partitionkey", key.encode())]


@pytest.mark.parametrize(
    "extra",
    [
        {"Content-Type": "application/json"},
        {},  # no Content-Type: JSON
        {"Content-Type": "application/json; charset=utf-8", "ce-time": "2026-01-01T10:00:00Z"},
        {"Content-Type": "application/json", "ce-tenant": "evil", "ce-subject": "o", "ce-zeta": "1"},
        {"Content-Type": "application/json", "ce-alpha": "x", "ce-dataschema": "https://s/x"},
        {"Content-Type": "application/json", "ce-datacontenttype": "application/vnd.x+json"},
        {"Content-Type": "application/json", "ce-partitionkey": "mine", "ce-traceparent": "00-1"},
    ],
)
def test_binary_fast_path_makes_the_sdk_record(extra):
    headers = {**BASE, **extra}
    [incoming] = events.parse_request(headers, ORDER, 500)
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    record = events.to_record(incoming, entry, "acme", NOW)
    names, sdk_headers = sdk_record(headers, ORDER)
    assert list(incoming.event.get_attributes()) == names
    assert record.headers == sdk_headers
    assert record.value == ORDER and record.key == b"acme/o-1"


def test_kafka_headers_are_to_binary_headers_for_a_structured_event():
    document = {
        "specversion": "1.0",
        "id": "e",
        "source": "/s",
        "type": "dev.ripple.shop.order.placed",
        "subject": "x",
        "count": 3,
        "flag": True,
        "data": json.loads(ORDER),
    }
    [incoming] = events.parse_request({"Content-Type": events.STRUCTURED}, json.dumps(document).encode(), 500)
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    record = events.to_record(incoming, entry, "acme", NOW)
    message = to_binary(incoming.event, data_marshaller=lambda data: data)
    assert record.headers == [*message.headers.items(), ("ce_partitionkey", b"acme/o-1")]


def test_ids_with_long_digit_runs_stay_on_the_fast_path():
    assert not events.LONG_NUMBER.search(b'{"orderId":"o-wrk1764745200123456789-1-1","n":12}')
    assert events.LONG_NUMBER.search(b'{"a": [0, -99999999999999999999]}')


@pytest.mark.parametrize(
    "body",
    [
        b'{"orderId":"o-wrk1764745200123456789-1-1","n":12}',
        b'{"a": [0, -99999999999999999999]}',
        b"1234567890123456789",
        b" \n-1234567890123456789",
        b'{"a":"x", "b" :\t-12345678901234567890123456789012345678901}',
        b'["123456789012345678", 1234567890123456789012345678901234567890]',
        b"[-x1234567890123456789]",
        b"[1.1234567890123456789]",
    ],
)
def test_long_number_finds_what_the_regex_finds(body):
    assert events._long_number(body) == bool(events.LONG_NUMBER.search(body))


def test_long_number_finds_what_the_regex_finds_anywhere():
    import random

    pieces = [b"1234567890", b"123456789", b"0", b"-", b" ", b"\n", b"[", b",", b":", b'"', b"x"]
    draw = random.Random(22)
    for _ in range(20000):
        body = b"".join(draw.choices(pieces, k=draw.randrange(13)))
        assert events._long_number(body) == bool(events.LONG_NUMBER.search(body)), body


def stdlib(body: bytes):
    """The standard library's reading, as before orjson (NaN/Infinity are not JSON)."""

    def refuse(name):
        raise ValueError(name)

    return json.loads(body, parse_constant=refuse)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b"[1.5, -0, 1e5, 2.5e-3, 0.1]",
        b'{"n": 12345678901234567890123}',  # beyond 64 bits: an integer, not a float
        b"[1, 12345678901234567890123]",
        b"  123456789012345678901",
        b'{"n":\n -12345678901234567890123}',
        b'{"n": -9223372036854775809}',
        b'{"n": 18446744073709551615}',
        b'{"s": "\\ud83d\\ude00 caf\\u00e9 \xc3\xa9"}',
        b'{"deep": [[[[[[[[[[{"x": null}]]]]]]]]]], "t": true, "f": false}',
        b" \n[] ",
    ],
)
def test_orjson_reads_what_the_standard_library_reads(body):
    value = events._load_json(body, "the body")
    assert value == stdlib(body)
    assert json.dumps(value) == json.dumps(stdlib(body))  # same types (int stays int)


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b'{"a": Infinity}',
        b'"\\ud800"',
        b'"\\udc00 x"',
        b'{"a": "\\u0000"}',
        b"\xef\xbb\xbf{}",
        b"{",
        b'"\xed\xa0\x80"',
        b"[" * 5000,
    ],
)
def test_what_orjson_refuses_is_answered_as_before(body):
    """Same problem (status, type and detail) as the standard library's path gave."""
    long_number = events.LONG_NUMBER
    try:
        events.LONG_NUMBER = re.compile(rb"(?!)")  # never matches: orjson is tried first
        fast = _outcome(lambda: events._load_json(body, "the body"))
    finally:
        events.LONG_NUMBER = long_number
    assert fast == _outcome(lambda: _slow_load(body))


def _outcome(read):
    try:
        return read()
    except Problem as problem:
        return problem.body()
    except RecursionError:  # nesting deeper than Python's stack: as before (a 500, not a 400)
        return "RecursionError"


def _slow_load(body: bytes):
    # The fast path skipped: the standard library's branch of _load_json.
    original = events.orjson.loads

    def refuse(_body):
        raise events.orjson.JSONDecodeError("forced", "", 0)

    events.orjson.loads = refuse
    try:
        return events._load_json(body, "the body")
    finally:
        events.orjson.loads = original


def test_receive_time_is_rfc3339_utc_with_microseconds_and_now():
    stamp = events.receive_time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(moment.timestamp() - time.time()) < 2


def test_access_lines_go_to_the_gateway_handler_or_through_logging(monkeypatch):
    import io
    import logging

    from ripple_gateway import app

    own = app._AccessHandler(io.StringIO())
    monkeypatch.setattr(app.access_log, "handlers", [own])
    monkeypatch.setattr(app.access_log, "level", logging.INFO)
    app._access('{"status":202}')
    assert own.stream.getvalue() == '{"status":202}\n'

    other = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(app.access_log, "handlers", [own, other])
    app._access('{"status":400}')
    assert own.stream.getvalue().endswith('{"status":400}\n')
    assert other.stream.getvalue() == '{"status":400}\n'


BATCH_ELEMENTS = [
    {},
    {"time": "2026-01-01T10:00:00Z", "subject": "o", "zeta": "1"},
    {"count": 3, "flag": True, "ratio": 7.0, "dataschema": "https://s/x"},
    {"tenant": "evil", "partitionkey": "mine", "datacontenttype": "application/json"},
    {"alpha": "x", "subject": None, "traceparent": "00-1", "datacontenttype": "application/vnd.x+json"},
]


@pytest.mark.parametrize("extra", BATCH_ELEMENTS)
def test_batch_fast_path_makes_the_sdk_record(extra):
    """A batch element is the event the SDK's from_dict made of it, and so is its record."""
    document = {**{name[3:]: value for name, value in BASE.items()}, **extra, "data": json.loads(ORDER)}
    body = json.dumps([document, document]).encode()
    incomings = events.parse_request({"Content-Type": events.BATCH}, body, 500)
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    records = [events.to_record(incoming, entry, "acme", NOW) for incoming in incomings]

    attributes = {
        name: events._attribute_string(value)
        for name, value in document.items()
        if name != "data" and value is not None
    }
    sdk_event = from_dict({**attributes, "data": None})
    key = entry.partition_key_of(document["data"], "acme")
    names, headers = as_published(sdk_event, key, "time" in document)
    for incoming, record in zip(incomings, records, strict=True):
        assert list(incoming.event.get_attributes()) == names
        assert record.headers == headers
        assert record.value == json.dumps(document["data"], separators=(",", ":")).encode()


def standard_compact(value):
    """The record value before orjson wrote it: the standard library's compact JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2], "b": "é", "c": None, "d": True, "e": {}},
        [1e-05, 1e-07, -1e-05, 9.5e-05, 0.0001, 0.00012, 1e-4],
        [1e16, 1e22, 1.2345678901234568e17, 1e15, 5e-324, 1.7976931348623157e308, -0.0, 0.1, 12.5],
        {"unitPrice": 4.9305051314766004e-05, "amount": 1.719426439093941e-09},
        [2**63 - 1, -(2**63), 2**64, -(2**63) - 1, 12345678901234567890123],
        ["\x00\x1f\x7f\x80\x9f", "\u2028\u2029", '😀 \\ " /', "\t\n\r\b\f", "1e5", ",1e-05", "0.00001"],
        {"e": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "1e": [0.0000, 10.00001]},
        [[[[[[[[[[{"x": [1.5e-06]}]]]]]]]]]],
    ],
)
def test_compact_json_is_the_standard_librarys(value):
    assert events._compact(value) == standard_compact(value)


def test_compact_json_of_deep_nesting_is_the_standard_librarys():
    value: list = [1e-07]
    for _ in range(300):  # orjson writes 254 levels at most
        value = [value]
    assert events._compact(value) == standard_compact(value)


def test_compact_json_of_any_float_is_the_standard_librarys():
    from hypothesis import given, seed, settings
    from hypothesis import strategies as st

    @seed(22)
    @settings(max_examples=2000, deadline=None)
    @given(st.floats(allow_nan=False, allow_infinity=False))
    def same_bytes(number):
        assert events._compact({"n": number, "l": [number, -number]}) == standard_compact(
            {"n": number, "l": [number, -number]}
        )

    same_bytes()
