"""Pure logic: the catalog, CloudEvents parsing and the Kafka record encoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from gateway_testkit import ORDER

from ripple_auth import Problem
from ripple_events import load_catalog
from ripple_events.catalog import CatalogError, parse_catalog
from ripple_gateway import events

REPO = Path(__file__).resolve().parents[3]


def binary(**extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-source": "/s",
        "ce-type": "dev.ripple.shop.order.placed",
    } | extra


def problem_of(headers: dict[str, str], body: bytes) -> Problem:
    with pytest.raises(Problem) as caught:
        events.parse_request(headers, body, max_batch=500)
    return caught.value


def test_catalog_declares_the_shop_domain_and_its_topics():
    catalog = load_catalog()
    assert catalog.topics() == [
        "ripple.shop.alerts",
        "ripple.shop.orders",
        "ripple.shop.pageviews",
        "ripple.shop.payments",
    ]
    assert catalog.get("dev.ripple.shop.order.placed").publish_role == "orders.publish"
    assert not catalog.get("dev.ripple.shop.order.flagged").publishable
    declared = (REPO / "infra/kafka/topics.yaml").read_text()
    for topic in catalog.topics():
        assert f"name: {topic}\n" in declared, f"{topic} is not declared in infra/kafka/topics.yaml"


def test_catalog_rejects_a_partition_key_that_is_not_required():
    document = {
        "events": [
            {
                "type": "t",
                "topic": "x",
                "partition_key": "k",
                "publish_role": None,
                "data_schema": {"type": "object"},
            }
        ]
    }
    with pytest.raises(CatalogError, match="partition_key"):
        parse_catalog(document)


def test_schema_errors_carry_json_pointers():
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    errors = entry.schema_errors(ORDER | {"currency": "eur", "items": [{"sku": "s", "quantity": 1}]})
    assert [e["path"] for e in errors] == ["/data/currency", "/data/items/0"]
    assert entry.schema_errors(ORDER) == []
    assert entry.partition_key_of(ORDER, "acme") == "acme/o-1"


def test_binary_event_keeps_body_bytes_and_stamps_tenant_and_key():
    body = (
        b'{ "orderId": "o-1", "customerId": "c-1", "items": [{"sku": "s", "quantity": 1, "unitPrice": 2}],\n'
    )
    body += b' "amount": 2, "currency": "EUR"}'
    [incoming] = events.parse_request(binary(**{"ce-tenant": "evil", "ce-subject": "o"}), body, 500)
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    record = events.to_record(incoming, entry, "acme", "2026-01-01T00:00:00.000000Z")
    assert record.topic == "ripple.shop.orders"
    assert record.key == b"acme/o-1"
    assert record.value == body
    headers = dict(record.headers)
    assert headers["ce_tenant"] == b"acme"
    assert headers["ce_partitionkey"] == b"acme/o-1"
    assert headers["ce_time"] == b"2026-01-01T00:00:00.000000Z"
    assert headers["ce_subject"] == b"o"
    assert headers["content-type"] == b"application/json"


def test_structured_event_data_is_compact_json_and_time_is_kept():
    event = {
        "specversion": "1.0",
        "id": "e",
        "source": "/s",
        "type": "t",
        "time": "2026-01-31T12:00:00+01:00",
    }
    event |= {"data": {"a": [1, 2], "b": "é"}, "flag": False}
    [incoming] = events.parse_request(
        {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode(), 9
    )
    assert incoming.data_bytes == '{"a":[1,2],"b":"é"}'.encode()
    assert incoming.has_time
    assert incoming.event["flag"] == "false"


@pytest.mark.parametrize(
    ("headers", "body", "status", "path"),
    [
        (binary(**{"ce-specversion": "0.3"}), b"{}", 400, "/specversion"),
        (binary(**{"ce-id": ""}), b"{}", 400, "/id"),
        (binary(**{"ce-time": "2026-13-01T00:00:00Z"}), b"{}", 400, "/time"),
        (binary(**{"ce-time": "2999-01-01T00:00:00Z"}), b"{}", 400, "/time"),
        (binary(**{"ce-x.y": "1"}), b"{}", 400, "/x.y"),
        (binary(**{"ce-abcdefghijklmnopqrstu": "1"}), b"{}", 400, "/abcdefghijklmnopqrstu"),
    ],
)
def test_attribute_errors_name_the_attribute(headers, body, status, path):
    problem = problem_of(headers, body)
    assert problem.status == status
    assert [e["path"] for e in problem.body()["errors"]] == [path]


STRUCTURED_EVENT = {"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": {}}


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        # A JSON key can end in a newline: `^...$` with re.match let "ab\n" through as a name.
        ({"ab\n": "1"}, "/ab\n"),
        ({"ab": "1"}, None),
        ({"time": "2026-01-31T12:00:00Z\n"}, "/time"),
    ],
)
def test_structured_attribute_names_and_times_match_whole(extra, path):
    body = json.dumps(STRUCTURED_EVENT | extra).encode()
    if path is None:
        assert events.parse_request({"Content-Type": "application/cloudevents+json"}, body, 9)
        return
    problem = problem_of({"Content-Type": "application/cloudevents+json"}, body)
    assert problem.status == 400
    assert path in {e["path"] for e in problem.body()["errors"]}


def test_batch_reports_every_bad_event():
    good = {"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "data": {}}
    batch = [good, {"id": "b"}, "nonsense", good | {"specversion": "0.3"}]
    problem = problem_of({"Content-Type": "application/cloudevents-batch+json"}, json.dumps(batch).encode())
    assert problem.status == 400
    assert sorted({e["index"] for e in problem.body()["errors"]}) == [1, 2, 3]


def test_receive_time_is_rfc3339_utc():
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$", events.receive_time())


# --- the CloudEvents HTTP binding (3.1.3.2) and the String type, in every mode -----------------------


def test_binary_attributes_are_percent_decoded_utf8():
    headers = binary(**{"ce-subject": "caf%C3%A9%20%C3%97", "ce-source": "/caf%C3%A9/%C3%BC"})
    [incoming] = events.parse_request(headers, json.dumps(ORDER).encode(), max_batch=500)
    assert incoming.event["subject"] == "café \u00d7" and incoming.event["source"] == "/café/ü"


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("ce-subject", "caf\u00c3\u00a9", "ce-subject: byte 0xC3 at position 3"),  # raw UTF-8
        ("ce-subject", "caf%C3", "ce-subject: the percent-encoded bytes are not UTF-8"),
        ("ce-color", "tab%09end", "ce-color: U+0009 at position 3"),
    ],
)
def test_binary_values_the_binding_cannot_mean_are_400_naming_the_attribute(header, value, message):
    problem = problem_of(binary(**{header: value}), json.dumps(ORDER).encode())
    assert problem.status == 400
    [error] = problem.extra["errors"]
    assert error["path"] == "/" + header[3:] and error["message"].startswith(message)


@pytest.mark.parametrize(
    "value", ["tab\tend", "line\nbreak", "del\u007f", "c1\u0085"]
)  # NUL: refused earlier
@pytest.mark.parametrize("name", ["subject", "source", "color"])
def test_structured_control_characters_are_refused_not_altered(name, value):
    event = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "dev.ripple.shop.order.placed"}
    body = json.dumps(event | {name: value, "data": ORDER}).encode()
    problem = problem_of({"Content-Type": events.STRUCTURED}, body)
    assert problem.status == 400
    assert any(
        e["path"] == f"/{name}" and "CloudEvents String" in e["message"] for e in problem.extra["errors"]
    )


def test_openapi_header_pattern_is_the_binding_grammar():
    """The document's HeaderText pattern accepts exactly the encodings the gateway decodes into a
    String (schemathesis fuzzes the gateway against it, so it must not be looser)."""
    from hypothesis import given, seed, settings
    from hypothesis import strategies as st

    from ripple_cloudevents import InvalidAttribute, decode_value, encode_value, string_problem

    document = yaml.safe_load((REPO / "functions/gateway/openapi.yaml").read_text())
    pattern = re.compile(document["components"]["schemas"]["HeaderText"]["pattern"])

    @seed(16)
    @settings(max_examples=400, deadline=None)
    @given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
    def encoded_text_matches_when_it_is_a_string(text):
        assert bool(pattern.fullmatch(encode_value(text))) == (string_problem(text) is None)

    @seed(16)
    @settings(max_examples=400, deadline=None)
    @given(st.from_regex(pattern, fullmatch=True))
    def what_matches_decodes(header):
        try:
            decode_value("subject", header)
        except InvalidAttribute as error:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{header!r} matches the document but is refused: {error}") from None

    encoded_text_matches_when_it_is_a_string()
    what_matches_decodes()


# A trailing newline passes the schema's pattern in Python (`$` matches before it): the code check.
@pytest.mark.parametrize("value", ["gs\u001d", "c1\u0084", "tab\tend", "trailing\n"])
def test_a_partition_key_with_a_control_character_is_refused(value):
    """The key's value becomes the partitionkey attribute, which every receiver behind Kafka
    (the dead-letter sink too) refuses: accepted, it blocked its KafkaSource partition for good."""
    body = json.dumps(ORDER | {"orderId": value}).encode()
    incoming = events.parse_request(binary(), body, 500)
    entries = events.resolve_types(incoming, load_catalog())
    with pytest.raises(Problem) as caught:
        events.validate_data(incoming, entries)
    assert caught.value.status == 422
    [error] = caught.value.extra["errors"]  # one error: the schema's or the code's
    assert error["path"] == "/data/orderId"
