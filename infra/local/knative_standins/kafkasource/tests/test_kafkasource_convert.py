"""kafkasource.convert: a record as the CloudEvent Knative delivers (to_cloudevent), and to_http:
the direct binary-mode path gives exactly what the CloudEvents SDK path gives, and both
percent-encode attribute values as the HTTP binding asks (3.1.3.2)."""

from __future__ import annotations

import base64
import json

import pytest
from cloudevents.conversion import to_binary

from knative_standins.delivery.errors import with_error_extensions
from knative_standins.kafkasource.convert import (
    HttpEvent,
    Record,
    to_cloudevent,
    to_http,
    with_error_headers,
)
from ripple_cloudevents import decode_headers, encode_value

BINARY = (
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-1"),
    ("ce_source", b"/shop"),
    ("ce_type", b"dev.ripple.shop.order.placed"),
    ("ce_time", b"2026-01-01T00:00:00Z"),
    ("ce_tenant", b"acme"),
    ("ce_partitionkey", b"acme/o-1"),
    ("content-type", b"application/json"),
)


def record(headers=BINARY, value=b'{"orderId": "o-1"}', key=b"acme/o-1") -> Record:
    return Record("ripple.shop.orders", 2, 7, 1_700_000_000_000, key, value, tuple(headers))


def sdk_http(rec: Record, overrides: dict[str, str]) -> HttpEvent:
    """What the dispatcher sent before the direct path: SDK event, overrides, SDK binary mode."""
    event = to_cloudevent(rec, "ripple", "event-store")
    for name, value in overrides.items():
        event[name] = value
    headers, body = to_binary(event)
    return HttpEvent(binding_encoded(headers), body or None)


def binding_encoded(headers: dict[str, str]) -> dict[str, str]:
    return {name: encode_value(value) if name.startswith("ce-") else value for name, value in headers.items()}


@pytest.mark.parametrize(
    ("label", "rec", "overrides"),
    [
        ("binary", record(), {}),
        ("binary with overrides", record(), {"team": "shop", "tenant": "other"}),
        ("binary, no content-type, no time", record(BINARY[:4] + BINARY[5:7]), {}),
        ("binary, upper-case header names", record([(n.upper(), v) for n, v in BINARY]), {}),
        ("binary, empty value", record(value=b""), {}),
        ("binary, no value (tombstone)", record(value=None), {}),
        ("binary, unicode attribute", record((*BINARY, ("ce_note", "héllo".encode()))), {}),
        ("binary, empty extension", record((*BINARY, ("ce_empty", None))), {}),
        ("binary, other headers dropped", record((*BINARY, ("traceparent", b"00-1-2-01"))), {}),
        ("binary 0.3", record((("ce_specversion", b"0.3"), *BINARY[1:])), {}),
        ("binary missing type: plain", record(BINARY[:3]), {}),
        ("binary, bad utf-8: plain", record((*BINARY, ("ce_bad", b"\xff\xfe"))), {}),
        ("plain", record([("X-Trace", b"abc")]), {"team": "shop"}),
        (
            "structured",
            record(
                [("content-type", b"application/cloudevents+json")],
                value=b'{"specversion": "1.0", "id": "s-1", "source": "/s", "type": "t", "data": {"a": 1}}',
            ),
            {},
        ),
    ],
)
def test_direct_path_equals_the_sdk_path(label, rec, overrides):
    assert to_http(rec, "ripple", "event-store", overrides) == sdk_http(rec, overrides), label


def test_error_headers_equal_the_sdk_error_extensions():
    rec = record()
    event = to_cloudevent(rec, "ripple", "event-store")
    for status, body in ((500, b"boom" * 400), (404, b""), (None, None)):
        headers, data = to_binary(with_error_extensions(event, "http://sink/", status, body))
        direct = with_error_headers(to_http(rec, "ripple", "event-store", {}), "http://sink/", status, body)
        assert direct == HttpEvent(binding_encoded(headers), data or None)
    dead = with_error_headers(to_http(rec, "ripple", "event-store", {}), "http://sink/", 500, b"x" * 2000)
    assert base64.b64decode(dead.headers["ce-knativeerrordata"]) == b"x" * 1024
    assert dead.headers["ce-knativeerrorcode"] == "500"
    assert dead.id == "e-1" and dead.source == "/shop"


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("plain", "plain"),
        ("with space and ünïcode", "with%20space%20and%20%C3%BCn%C3%AFcode"),
        ("café \u00d7 😀", "caf%C3%A9%20%C3%97%20%F0%9F%98%80"),
        ('quote " and 100%', "quote%20%22%20and%20100%25"),
        ("two\nlines", "two%0Alines"),
        ("tab\there", "tab%09here"),
    ],
)
def test_attribute_values_are_percent_encoded_in_headers(value, sent):
    """Raw UTF-8 in the Kafka header, the binding's ASCII form on HTTP, decoded back unchanged."""
    rec = record((*BINARY, ("ce_subject", value.encode())))
    headers = to_http(rec, "ripple", "event-store", {"note": value}).headers
    assert headers["ce-subject"] == sent and headers["ce-note"] == sent
    assert all(header.isascii() for header in headers.values())
    if value.isprintable():  # control characters are encoded, but no receiver takes them back
        assert decode_headers(headers.items())["ce-subject"] == value


# --- to_cloudevent: binary, structured and plain records -----------------------------------------


def kafka_record(headers=(), key=b"acme/o-1", value=b'{"orderId": "o-1"}', offset=7) -> Record:
    return Record("ripple.shop.orders", 2, offset, 1_700_000_000_000, key, value, tuple(headers))


def test_binary_record_keeps_its_event_and_data_bytes():
    event = to_cloudevent(kafka_record(BINARY), "ripple", "event-store")
    assert event["id"] == "e-1" and event["source"] == "/shop" and event["tenant"] == "acme"
    assert event["partitionkey"] == "acme/o-1"
    assert event["datacontenttype"] == "application/json"
    assert event.get_data() == b'{"orderId": "o-1"}'
    assert event["time"] == "2026-01-01T00:00:00Z"


def test_binary_record_without_time_gets_none_added():
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_source", b"/s"), ("ce_type", b"t")]
    assert "time" not in to_cloudevent(kafka_record(headers), "ripple", "x")


def test_structured_record_is_the_same_event():
    envelope = {"specversion": "1.0", "id": "e-2", "source": "/shop", "type": "t", "data": {"a": 1}}
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    event = to_cloudevent(kafka_record(headers, value=json.dumps(envelope).encode()), "ripple", "x")
    assert (event["id"], event["source"], event["type"]) == ("e-2", "/shop", "t")
    assert event.get_data() == {"a": 1}
    assert "time" not in event


def test_plain_record_is_built_like_knative():
    event = to_cloudevent(
        kafka_record([("X-Trace", b"abc"), ("content-type", b"Text/Plain")]), "ripple", "event-store"
    )
    assert event["type"] == "dev.knative.kafka.event"
    assert event["source"] == "/apis/v1/namespaces/ripple/kafkasources/event-store#ripple.shop.orders"
    assert event["id"] == "partition:2/offset:7"
    assert event["subject"] == "partition:2#7"
    assert event["key"] == event["partitionkey"] == "acme/o-1"
    assert event["kafkaheaderxtrace"] == "abc"
    assert event["datacontenttype"] == "text/plain"
    assert event["time"] == "2023-11-14T22:13:20Z"
    assert event.get_data() == b'{"orderId": "o-1"}'


def test_broken_binary_record_is_delivered_as_plain():
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e")]  # no source, no type
    assert to_cloudevent(kafka_record(headers), "ripple", "x")["type"] == "dev.knative.kafka.event"
