"""Pure logic: what real CloudEvents clients send is parsed as the spec says, and the API document is exact.

The requests come from the pinned Python SDK itself (cloudevents 1.12.0), not from hand-written
copies: its `to_binary` of dict data without datacontenttype sends no Content-Type at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from gateway_testkit import ORDER, ORDER_TYPE
from werkzeug.datastructures import Headers

from ripple_auth import Problem
from ripple_events import load_catalog
from ripple_gateway import events

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.yaml"
BINARY = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/s", "ce-type": ORDER_TYPE}


def problem_of(headers: dict[str, str], body: bytes) -> Problem:
    with pytest.raises(Problem) as caught:
        events.parse_request(headers, body, max_batch=500)
    return caught.value


def record_of(headers: dict[str, str], body: bytes) -> dict[str, bytes]:
    # Header names are case-insensitive, as in the request the gateway gets from werkzeug.
    [incoming] = events.parse_request(Headers(headers), body, max_batch=500)
    entry = load_catalog().get(incoming.event["type"])
    record = events.to_record(incoming, entry, "acme", "2026-01-01T00:00:00.000000Z")
    return dict(record.headers) | {"value": record.value}


def test_python_sdk_binary_request_without_content_type_is_json():
    headers, body = to_binary(CloudEvent({"type": ORDER_TYPE, "source": "/sdk"}, ORDER))
    assert not any(name.lower() == "content-type" for name in headers), "the SDK's default changed"
    record = record_of(headers, body)
    # The implied type is made explicit on the record (JSON format 3.1.2).
    assert record["content-type"] == b"application/json"
    assert json.loads(record["value"]) == ORDER


def test_python_sdk_structured_request_is_accepted():
    headers, body = to_structured(CloudEvent({"type": ORDER_TYPE, "source": "/sdk", "channel": "web"}, ORDER))
    record = record_of(headers, body)
    assert record["ce_channel"] == b"web"
    assert record["content-type"] == b"application/json"


def test_binary_without_content_type_still_needs_json_data():
    problem = problem_of(BINARY, b"hello")
    assert problem.status == 400
    assert "application/json" in problem.body()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/octet-stream"])
def test_declared_non_json_binary_data_is_415(content_type):
    assert problem_of(BINARY | {"Content-Type": content_type}, b"{}").status == 415


def test_no_content_type_and_no_ce_headers_is_415():
    assert problem_of({}, b"{}").status == 415


def test_header_values_are_percent_decoded_as_the_http_binding_says():
    headers = BINARY | {"ce-subject": "order%2042%20caf%C3%A9", "ce-channel": '"w\\"eb"'}
    record = record_of(headers | {"Content-Type": "application/json"}, json.dumps(ORDER).encode())
    assert record["ce_subject"] == "order 42 café".encode()
    assert record["ce_channel"] == b'w"eb'
    # A value of a 1.x sender without escapes is unchanged.
    record = record_of(BINARY | {"ce-subject": "100% sure"}, json.dumps(ORDER).encode())
    assert record["ce_subject"] == b"100% sure"


def test_percent_encoded_bytes_that_are_not_utf8_are_400():
    problem = problem_of(BINARY | {"ce-subject": "%FF"}, b"{}")
    assert problem.status == 400
    assert [e["path"] for e in problem.body()["errors"]] == ["/subject"]


def test_null_optional_attributes_are_absent():
    event = {"specversion": "1.0", "id": "e", "source": "/s", "type": ORDER_TYPE, "data": ORDER}
    record = record_of(
        {"Content-Type": "application/cloudevents+json"},
        json.dumps(event | {"subject": None, "time": None, "channel": None}).encode(),
    )
    assert "ce_subject" not in record and "ce_channel" not in record
    assert record["ce_time"] == b"2026-01-01T00:00:00.000000Z"
    assert problem_of(
        {"Content-Type": "application/cloudevents+json"}, json.dumps(event | {"id": None}).encode()
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, b"7"), (7.0, b"7"), (True, b"true"), (-(2**31), b"-2147483648"), (2**31 - 1, b"2147483647")],
)
def test_integer_extensions_are_cloudevents_integers(value, expected):
    event = {"specversion": "1.0", "id": "e", "source": "/s", "type": ORDER_TYPE, "data": ORDER, "n": value}
    assert (
        record_of({"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode())["ce_n"]
        == expected
    )


@pytest.mark.parametrize("value", [7.5, 2**31, -(2**31) - 1])
def test_extensions_outside_integer_are_400(value):
    event = {"specversion": "1.0", "id": "e", "source": "/s", "type": ORDER_TYPE, "data": ORDER, "n": value}
    assert (
        problem_of({"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()).status == 400
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": {"x": NaN}}',
        b'{"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": {"x": -Infinity}}',
        b'{"specversion": "1.0", "id": "\\ud800", "source": "/s", "type": "t", "data": {}}',
        b'{"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": {"x": "\\udfff"}}',
    ],
    ids=["NaN", "Infinity", "lone surrogate in an attribute", "lone surrogate in data"],
)
def test_what_is_not_json_text_is_400_not_a_crash(body):
    assert problem_of({"Content-Type": "application/cloudevents+json"}, body).status == 400


def test_a_surrogate_pair_is_one_character():
    event = b'{"specversion": "1.0", "id": "\\ud83d\\ude00", "source": "/s", "type": "t", "data": {}}'
    [incoming] = events.parse_request({"Content-Type": "application/cloudevents+json"}, event, 5)
    assert incoming.event["id"] == "\U0001f600"


def test_openapi_data_schemas_are_the_catalogs():
    document = yaml.safe_load(OPENAPI.read_text())
    schemas = document["components"]["schemas"]
    names = {
        "dev.ripple.shop.order.placed": "OrderPlaced",
        "dev.ripple.shop.payment.captured": "PaymentCaptured",
        "dev.ripple.shop.page.viewed": "PageViewed",
    }
    publishable = {entry.type: entry for entry in load_catalog() if entry.publishable}
    assert set(publishable) == set(names), "a publishable type was added: give it its schemas in openapi.yaml"
    assert schemas["PublishableType"]["enum"] == list(names)
    for event_type, name in names.items():
        assert schemas[name] == publishable[event_type].data_schema, f"{name} differs from the catalog"
        event = schemas[f"{name}Event"]
        assert event["properties"]["type"] == {"const": event_type}
        assert event["properties"]["data"] == {"$ref": f"#/components/schemas/{name}"}


def test_openapi_every_error_status_is_a_problem():
    document = yaml.safe_load(OPENAPI.read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                    assert list(response["content"]) == ["application/problem+json"], (path, method, status)


def test_openapi_extension_name_pattern_is_every_name_but_data():
    pattern = yaml.safe_load(OPENAPI.read_text())["components"]["schemas"]["OrderPlacedEvent"][
        "patternProperties"
    ]
    regex = re.compile(next(iter(pattern)))
    for name in ["d", "da", "dat", "datas", "dataschema", "a", "z9", "channel", "x" * 20, "dbz", "daz"]:
        assert regex.match(name), name
    for name in ["data", "", "x" * 21, "Data", "data_base64", "a-b"]:
        assert not regex.match(name), name
