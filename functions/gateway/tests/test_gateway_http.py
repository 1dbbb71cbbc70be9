"""The gateway against the real Kafka and Keycloak: what arrives in Kafka, and every rejection."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import requests
import yaml
from cloudevents.kafka import KafkaMessage, from_binary
from gateway_testkit import (
    ORDER_TYPE,
    PAGE_TYPE,
    PAYMENT_TYPE,
    TopicReader,
    binary_headers,
    new_id,
    order,
    post,
    structured,
)

pytestmark = pytest.mark.integration

PROBLEM = "https://ripple.dev/problems/"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@pytest.fixture
def orders(stack):
    reader = TopicReader(stack.kafka_bootstrap, "ripple.shop.orders")
    yield reader
    reader.close()


def headers_of(record) -> dict[str, bytes]:
    names = [name for name, _ in record.headers]
    assert len(names) == len(set(names)), f"duplicate headers: {names}"
    return dict(record.headers)


def test_binary_event_arrives_byte_identical(gateway, publisher_token, orders):
    data = order()
    # Odd spacing on purpose: the record value must be the body's bytes, not a re-encoding.
    body = json.dumps(data, indent=1).encode()
    headers = binary_headers(
        publisher_token,
        subject="order/" + data["orderId"],
        channel="web",
        tenant="globex",
        partitionkey="evil",
    )
    response = post(gateway, body, headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "ids": [headers["ce-id"]]}

    record = orders.records_with_ids([headers["ce-id"]])[headers["ce-id"]]
    key = f"acme/{data['orderId']}".encode()
    assert record.value == body
    assert record.key == key
    got = headers_of(record)
    assert RFC3339_UTC.match(got.pop("ce_time").decode()), "time defaults to the receive time in UTC"
    assert got == {
        "content-type": b"application/json",
        "ce_specversion": b"1.0",
        "ce_id": headers["ce-id"].encode(),
        "ce_source": b"/tests/gateway",
        "ce_type": ORDER_TYPE.encode(),
        "ce_subject": headers["ce-subject"].encode(),
        "ce_channel": b"web",
        "ce_tenant": b"acme",  # from the token: the client's "globex" is overwritten
        "ce_partitionkey": key,
    }
    # The SDK reads the record back as the same event.
    event = from_binary(KafkaMessage(got | {"ce_time": b"x"}, record.key, record.value))
    assert event["partitionkey"] == key
    assert event["id"] == headers["ce-id"]


def test_structured_event_keeps_attributes_and_time(gateway, publisher_token, orders):
    data = order()
    event = structured(
        ORDER_TYPE, data, time="2026-01-31T12:00:00Z", tenant="globex", priority=3, urgent=True
    )
    event["datacontenttype"] = "application/json"
    response = post(
        gateway,
        json.dumps(event),
        {"Content-Type": "application/cloudevents+json", "Authorization": f"Bearer {publisher_token}"},
    )
    assert response.status_code == 202, response.text

    record = orders.records_with_ids([event["id"]])[event["id"]]
    key = f"acme/{data['orderId']}".encode()
    # Structured mode: the value is the data member as compact JSON (documented in the README).
    assert record.value == json.dumps(data, separators=(",", ":")).encode()
    assert record.key == key
    assert headers_of(record) == {
        "content-type": b"application/json",
        "ce_specversion": b"1.0",
        "ce_id": event["id"].encode(),
        "ce_source": b"/tests/gateway",
        "ce_type": ORDER_TYPE.encode(),
        "ce_time": b"2026-01-31T12:00:00Z",
        "ce_tenant": b"acme",
        "ce_priority": b"3",
        "ce_urgent": b"true",
        "ce_partitionkey": key,
    }


def test_batch_goes_to_each_types_topic(stack, gateway, publisher_token, orders):
    pages = TopicReader(stack.kafka_bootstrap, "ripple.shop.pageviews")
    payments = TopicReader(stack.kafka_bootstrap, "ripple.shop.payments")
    try:
        placed = order()
        batch = [
            structured(ORDER_TYPE, placed),
            structured(PAGE_TYPE, {"sessionId": "s-1", "path": "/cart", "referrer": "https://example.org/"}),
            structured(
                PAYMENT_TYPE,
                {
                    "paymentId": new_id("p"),
                    "orderId": placed["orderId"],
                    "amount": 25.0,
                    "currency": "EUR",
                    "method": "card",
                },
            ),
        ]
        response = post(
            gateway,
            json.dumps(batch),
            {
                "Content-Type": "application/cloudevents-batch+json",
                "Authorization": f"Bearer {publisher_token}",
            },
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 3, "ids": [e["id"] for e in batch]}

        keys = []
        for reader, event in ((orders, batch[0]), (pages, batch[1]), (payments, batch[2])):
            record = reader.records_with_ids([event["id"]])[event["id"]]
            keys.append(record.key)
            assert record.value == json.dumps(event["data"], separators=(",", ":")).encode()
            got = headers_of(record)
            assert got["ce_type"] == event["type"].encode()
            assert got["ce_tenant"] == b"acme"
            assert got["content-type"] == b"application/json"
            assert RFC3339_UTC.match(got["ce_time"].decode())
        # One order's events share the key, so they share a partition and stay ordered.
        order_key = f"acme/{placed['orderId']}".encode()
        assert keys == [order_key, b"acme/s-1", order_key]
    finally:
        pages.close()
        payments.close()


def test_tenant_comes_from_the_users_token(stack, gateway, orders):
    pages = TopicReader(stack.kafka_bootstrap, "ripple.shop.pageviews")
    try:
        headers = binary_headers(stack.user_token("bob"), PAGE_TYPE, tenant="acme")
        response = post(gateway, b'{"sessionId":"s-bob","path":"/"}', headers)
        assert response.status_code == 202, response.text
        record = pages.records_with_ids([headers["ce-id"]])[headers["ce-id"]]
        assert dict(record.headers)["ce_tenant"] == b"globex"
        assert record.key == b"globex/s-bob"
    finally:
        pages.close()


def _structured_request(event) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()


def _batch_request(events) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/cloudevents-batch+json"}, json.dumps(events).encode()


def _binary_request(body: bytes = b"", **attributes) -> tuple[dict[str, str], bytes]:
    headers = binary_headers(None)
    for name, value in attributes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers, body or json.dumps(order()).encode()


def _without(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


BAD_ORDER = order() | {"items": [{"sku": "s", "quantity": 0, "unitPrice": 1}]}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
MALFORMED = (400, "malformed-event")
BAD_INPUTS = {
    "malformed JSON (structured)": ((STRUCTURED, b'{"specversion": "1.0",'), *MALFORMED),
    "malformed JSON (binary data)": (_binary_request(b"{not json"), *MALFORMED),
    "malformed JSON (batch)": ((BATCH, b"[{"), *MALFORMED),
    "missing id (structured)": (
        _structured_request(_without(structured(ORDER_TYPE, order()), "id")),
        *MALFORMED,
    ),
    "missing source (binary)": (_binary_request(**{"ce-source": None}), *MALFORMED),
    "missing type in one batch event": (
        _batch_request([structured(ORDER_TYPE, order()), _without(structured(ORDER_TYPE, order()), "type")]),
        *MALFORMED,
    ),
    "binary without ce-specversion": (_binary_request(**{"ce-specversion": None}), *MALFORMED),
    "wrong specversion": (
        _structured_request(structured(ORDER_TYPE, order(), specversion="0.3")),
        *MALFORMED,
    ),
    # (Header names with "_" never reach the gateway: gunicorn drops them.)
    "invalid extension name": (_binary_request(**{"ce-bad-name": "x"}), *MALFORMED),
    "too long extension name": (_binary_request(**{"ce-averyveryverylongextension": "x"}), *MALFORMED),
    "invalid time": (_structured_request(structured(ORDER_TYPE, order(), time="yesterday")), *MALFORMED),
    "data_base64": (
        _structured_request(_without(structured(ORDER_TYPE, None), "data") | {"data_base64": "e30="}),
        *MALFORMED,
    ),
    # Deeper than Python's recursion limit: a client error (it was a 500).
    "JSON nested 1,000 levels (structured)": (
        (STRUCTURED, b'{"specversion": "1.0", "data": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
        *MALFORMED,
    ),
    "JSON nested 5,000 levels (binary data)": (_binary_request(b"[" * 5000 + b"]" * 5000), *MALFORMED),
    "JSON nested 5,000 levels (batch)": ((BATCH, b"[" * 5000 + b"]" * 5000), *MALFORMED),
    "empty batch": (_batch_request([]), *MALFORMED),
    "batch not an array": (_batch_request({"events": []}), *MALFORMED),
    "unknown type": (
        _structured_request(structured("dev.ripple.shop.cart.abandoned", {})),
        422,
        "unknown-event-type",
    ),
    "schema failure": (_structured_request(structured(ORDER_TYPE, BAD_ORDER)), 422, "schema-violation"),
    "schema failure in a batch": (
        _batch_request([structured(ORDER_TYPE, order()), structured(PAGE_TYPE, {})]),
        422,
        "schema-violation",
    ),
    "internal type": (_structured_request(structured("dev.ripple.shop.order.flagged", {})), 403, "forbidden"),
    "oversized body": ((STRUCTURED, b" " * (1024 * 1024 + 1)), 413, "payload-too-large"),
    "event too big for one Kafka record": (
        _binary_request(
            json.dumps({"sessionId": "s", "path": "/" + "x" * 1048500}).encode(), **{"ce-type": PAGE_TYPE}
        ),
        413,
        "payload-too-large",
    ),
    "too many events": (
        _batch_request([structured(PAGE_TYPE, {"sessionId": "s", "path": "/"})] * 501),
        413,
        "payload-too-large",
    ),
    "bad content type": (({"Content-Type": "text/plain"}, b"hello"), 415, "unsupported-media-type"),
    "binary with non-JSON data": (
        _binary_request(b"hello", **{"Content-Type": "text/plain"}),
        415,
        "unsupported-media-type",
    ),
    "structured with non-JSON datacontenttype": (
        _structured_request(structured(ORDER_TYPE, order(), datacontenttype="text/plain")),
        415,
        "unsupported-media-type",
    ),
}


@pytest.mark.parametrize(("request_parts", "status", "slug"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gets_its_problem(gateway, publisher_token, request_parts, status, slug):
    headers, body = request_parts
    response = post(gateway, body, headers | {"Authorization": f"Bearer {publisher_token}"})
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEM + slug
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.text


def test_schema_failure_names_the_path(gateway, publisher_token):
    page = structured(PAGE_TYPE, {"sessionId": "s", "path": "/"})
    headers, body = _batch_request([page, structured(ORDER_TYPE, BAD_ORDER)])
    response = post(gateway, body, headers | {"Authorization": f"Bearer {publisher_token}"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"index": 1, "path": "/data/items/0/quantity", "message": "0 is less than the minimum of 1"}
    ]


def test_a_value_ending_in_a_newline_does_not_pass_an_anchored_pattern(gateway, publisher_token):
    # `^[A-Z]{3}$` matched "EUR\n" under Python's re before (a data value silently accepted).
    headers, body = _batch_request([structured(ORDER_TYPE, order() | {"currency": "EUR\n"})])
    response = post(gateway, body, headers | {"Authorization": f"Bearer {publisher_token}"})
    assert response.status_code == 422, response.text
    assert [(e["index"], e["path"]) for e in response.json()["errors"]] == [(0, "/data/currency")]


def test_a_rejected_batch_writes_nothing(gateway, publisher_token, orders):
    good = structured(ORDER_TYPE, order())
    headers, body = _batch_request([good, structured(ORDER_TYPE, BAD_ORDER)])
    response = post(gateway, body, headers | {"Authorization": f"Bearer {publisher_token}"})
    assert response.status_code == 422
    # A later event proves the topic was read past the point where the good one would be.
    marker = binary_headers(publisher_token)
    assert post(gateway, json.dumps(order()), marker).status_code == 202
    orders.records_with_ids([marker["ce-id"]])
    ids = {dict(r.headers).get("ce_id") for r in orders.records_since_start()}
    assert good["id"].encode() not in ids


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(gateway, method):
    response = requests.request(method, gateway + "/", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["type"] == PROBLEM + "method-not-allowed"


def test_unknown_path_is_a_problem_not_html(gateway):
    for path in ("/nope", "/robots.txt"):
        response = requests.get(gateway + path, timeout=10)
        assert response.status_code == 404
        assert response.json()["type"] == PROBLEM + "not-found"


def test_probes_and_metrics(gateway, publisher_token):
    assert requests.get(gateway + "/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(gateway + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    post(gateway, b"{}", {"Content-Type": "application/json"})  # a 401, counted by reason
    text = requests.get(gateway + "/metrics", timeout=10).text
    for name in (
        "ripple_gateway_requests_total",
        "ripple_gateway_request_duration_seconds_bucket",
        "ripple_gateway_kafka_ack_duration_seconds_bucket",
        "ripple_gateway_events_accepted_total",
        "ripple_gateway_batch_size_events_bucket",
        'ripple_auth_failures_total{reason="missing"}',
    ):
        assert name in text, name


class OpenAPI:
    def __init__(self, document: dict) -> None:
        self.document = document

    def check(self, path: str, method: str, response: requests.Response) -> None:
        operation = self.document["paths"][path][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {path} -> {status} is not documented"
        declared = operation["responses"][status]
        pointer = f"#/paths/{path.replace('/', '~1')}/{method.lower()}/responses/{status}"
        if "$ref" in declared:
            pointer = declared["$ref"]
            declared = self.resolve(pointer)
        for header, spec in declared.get("headers", {}).items():
            if spec.get("required"):
                assert header in response.headers, f"{status} lacks header {header}"
        media = response.headers["Content-Type"].split(";")[0]
        assert media in declared["content"], f"{status} with undocumented media type {media}"
        if "json" in media:
            # The whole document is the schema root so that #/components/... references resolve.
            schema = self.document | {"$ref": f"{pointer}/content/{media.replace('/', '~1')}/schema"}
            jsonschema.Draft202012Validator(schema).validate(response.json())

    def resolve(self, pointer: str) -> dict:
        node = self.document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def test_responses_match_the_openapi_document(stack, gateway, publisher_token):
    served = requests.get(gateway + "/openapi.yaml", timeout=10)
    assert served.status_code == 200
    document = yaml.safe_load(served.text)
    assert document["openapi"].startswith("3.1")
    api = OpenAPI(document)
    auth = {"Authorization": f"Bearer {publisher_token}"}
    calls = [
        ("/", "POST", dict(binary_headers(publisher_token)), json.dumps(order())),
        (
            "/",
            "POST",
            {"Content-Type": "application/cloudevents-batch+json"} | auth,
            json.dumps([structured(PAGE_TYPE, {"sessionId": "s", "path": "/"})] * 3),
        ),
        ("/", "POST", {"Content-Type": "application/cloudevents+json"} | auth, "{"),
        ("/", "POST", {"Content-Type": "application/json"}, "{}"),
        ("/", "POST", {"Content-Type": "application/json", "Authorization": "Bearer x.y.z"}, "{}"),
        ("/", "POST", dict(binary_headers(stack.client_token("ripple-norole"))), json.dumps(order())),
        ("/", "POST", {"Content-Type": "text/plain"} | auth, "x"),
        (
            "/",
            "POST",
            {"Content-Type": "application/cloudevents+json"} | auth,
            json.dumps(structured(ORDER_TYPE, BAD_ORDER)),
        ),
        ("/", "POST", {"Content-Type": "application/cloudevents+json"} | auth, " " * (1024 * 1024 + 1)),
        ("/healthz", "GET", {}, None),
        ("/readyz", "GET", {}, None),
        ("/metrics", "GET", {}, None),
        ("/openapi.yaml", "GET", {}, None),
    ]
    statuses = set()
    for path, method, headers, body in calls:
        response = requests.request(method, gateway + path, headers=headers, data=body, timeout=30)
        api.check(path, method, response)
        statuses.add(response.status_code)
    assert {200, 202, 400, 401, 403, 413, 415, 422} <= statuses
    wrong_method = requests.put(gateway + "/", timeout=10)
    api.check("/", "PUT" if "put" in document["paths"]["/"] else "POST", wrong_method)
