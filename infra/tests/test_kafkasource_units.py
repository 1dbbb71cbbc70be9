"""Pure logic of the KafkaSource dispatcher: manifest validation, backoff, CloudEvent conversion."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from knative_standins.delivery.errors import with_error_extensions
from knative_standins.delivery.policy import backoff_s, dead_letter_backoff_s, is_retryable
from knative_standins.delivery.spec import Delivery, ManifestError, parse_duration
from knative_standins.kafkasource.convert import Record, to_cloudevent
from knative_standins.kafkasource.manifest import DEFAULT_DELIVERY, load, parse
from ripple_stack.settings import REPO_ROOT

PATH = Path("knative/x/kafkasource.yaml")


def manifest(**spec_changes: object) -> dict:
    document = {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": {"name": "x", "namespace": "ripple"},
        "spec": {
            "bootstrapServers": ["ripple-kafka-bootstrap.ripple.svc:9092"],
            "topics": ["ripple.shop.orders"],
            "consumerGroup": "g",
            "sink": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "event-store"}
            },
        },
    }
    document["spec"].update(spec_changes)
    return document


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "knative").glob("*/kafkasource.yaml")), ids=str)
def test_every_kafkasource_of_the_repository_is_valid(path):
    source = load(path)
    assert source.delivery.dead_letter_sink is not None, f"{path}: give failed events somewhere to go"


def test_knative_defaults_apply():
    source = parse(manifest(), PATH)
    assert source.ordering == "ordered"
    assert source.initial_offset == "latest"
    assert source.delivery == DEFAULT_DELIVERY  # no delivery: retry 10, exponential, PT0.3S
    only_retry = parse(manifest(delivery={"retry": 2}), PATH).delivery
    assert (only_retry.retry, only_retry.backoff_policy, only_retry.backoff_delay_s) == (
        2,
        "exponential",
        0.2,
    )
    assert only_retry.timeout_s == 600.0


def test_full_delivery_is_read():
    source = parse(
        manifest(
            ordering="unordered",
            initialOffset="earliest",
            delivery={
                "retry": 5,
                "backoffPolicy": "linear",
                "backoffDelay": "PT0.5S",
                "timeout": "PT1M",
                "deadLetterSink": {"uri": "http://dead.example/x"},
            },
        ),
        PATH,
    )
    assert source.ordering == "unordered"
    assert source.delivery == Delivery(5, "linear", 0.5, 60.0, source.delivery.dead_letter_sink)
    assert source.delivery.dead_letter_sink.uri == "http://dead.example/x"


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"delivery": {"retries": 3}}, "spec.delivery.retries: unknown or unsupported field"),
        ({"net": {"sasl": {}}}, "spec.net: unknown or unsupported field"),
        ({"ordering": "sorted"}, "spec.ordering: must be one of ordered, unordered"),
        ({"delivery": {"backoffDelay": "500ms"}}, "spec.delivery.backoffDelay: '500ms' is not an ISO 8601"),
        ({"delivery": {"backoffPolicy": "random"}}, "spec.delivery.backoffPolicy: must be one of"),
        ({"delivery": {"retry": -1}}, "spec.delivery.retry: must be a whole number"),
        ({"sink": {"uri": "event-store"}}, "spec.sink.uri: must be an absolute http(s) URL"),
        ({"sink": {"ref": {"kind": "Service", "name": "x"}}}, "spec.sink.ref.apiVersion: is required"),
        ({"topics": []}, "spec.topics: must be a non-empty list"),
        ({"initialOffset": "newest"}, "spec.initialOffset: must be one of earliest, latest"),
    ],
)
def test_wrong_fields_are_errors_naming_file_and_path(changes, where):
    with pytest.raises(ManifestError) as error:
        parse(manifest(**changes), PATH)
    assert str(error.value).startswith(f"{PATH}: {where}")


def test_unknown_annotation_and_key_type_are_refused():
    document = manifest()
    document["metadata"]["annotations"] = {"kafka.eventing.knative.dev/delivery.order": "ordered"}
    with pytest.raises(ManifestError, match=r"metadata\.annotations"):
        parse(document, PATH)
    document = manifest()
    document["metadata"]["labels"] = {"kafkasources.sources.knative.dev/key-type": "int"}
    with pytest.raises(ManifestError, match="key-type"):
        parse(document, PATH)


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0.2S", 0.2), ("PT1M30S", 90), ("PT2H", 7200), ("P1D", 86400), ("P1W", 604800)]
)
def test_iso8601_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["P", "PT", "P1Y", "P1M", "1S", "PT1.S", "", "PT-1S"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_backoff_follows_knatives_formula():
    linear = Delivery(retry=3, backoff_policy="linear", backoff_delay_s=0.5)
    exponential = Delivery(retry=3, backoff_policy="exponential", backoff_delay_s=0.5)
    assert [backoff_s(linear, n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [backoff_s(exponential, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert backoff_s(Delivery(backoff_delay_s=0), 4) == 0
    assert dead_letter_backoff_s(exponential, 40) == 30.0


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *((status, True) for status in (None, 500, 503, 404, 408, 409, 429)),
        *((status, False) for status in (400, 401, 403, 413, 422, 302)),
    ],
)
def test_which_statuses_are_retried(status, retried):
    assert is_retryable(status) is retried


def record(headers=(), key=b"acme/o-1", value=b'{"orderId": "o-1"}', offset=7) -> Record:
    return Record("ripple.shop.orders", 2, offset, 1_700_000_000_000, key, value, tuple(headers))


def test_binary_record_keeps_its_event_and_data_bytes():
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_source", b"/shop"),
        ("ce_type", b"dev.ripple.shop.order.placed"),
        ("ce_time", b"2026-01-01T00:00:00Z"),
        ("ce_tenant", b"acme"),
        ("ce_partitionkey", b"acme/o-1"),
        ("content-type", b"application/json"),
    ]
    event = to_cloudevent(record(headers), "ripple", "event-store")
    assert event["id"] == "e-1" and event["source"] == "/shop" and event["tenant"] == "acme"
    assert event["partitionkey"] == "acme/o-1"
    assert event["datacontenttype"] == "application/json"
    assert event.get_data() == b'{"orderId": "o-1"}'
    assert event["time"] == "2026-01-01T00:00:00Z"


def test_binary_record_without_time_gets_none_added():
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_source", b"/s"), ("ce_type", b"t")]
    assert "time" not in to_cloudevent(record(headers), "ripple", "x")


def test_structured_record_is_the_same_event():
    envelope = {"specversion": "1.0", "id": "e-2", "source": "/shop", "type": "t", "data": {"a": 1}}
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    event = to_cloudevent(record(headers, value=json.dumps(envelope).encode()), "ripple", "x")
    assert (event["id"], event["source"], event["type"]) == ("e-2", "/shop", "t")
    assert event.get_data() == {"a": 1}
    assert "time" not in event


def test_plain_record_is_built_like_knative():
    event = to_cloudevent(
        record([("X-Trace", b"abc"), ("content-type", b"Text/Plain")]), "ripple", "event-store"
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
    assert to_cloudevent(record(headers), "ripple", "x")["type"] == "dev.knative.kafka.event"


def test_error_extensions():
    event = to_cloudevent(record(), "ripple", "x")
    dead = with_error_extensions(event, "http://sink/", 500, b"x" * 2000)
    assert dead["knativeerrordest"] == "http://sink/"
    assert dead["knativeerrorcode"] == "500"
    assert base64.b64decode(dead["knativeerrordata"]) == b"x" * 1024
    assert dead["id"] == event["id"] and dead.get_data() == event.get_data()
    no_answer = with_error_extensions(event, "http://sink/", None, None)
    assert "knativeerrorcode" not in no_answer and "knativeerrordata" not in no_answer


def test_manifest_yaml_round_trip(tmp_path):
    path = tmp_path / "kafkasource.yaml"
    path.write_text(yaml.safe_dump(manifest(delivery={"retry": 1, "deadLetterSink": {"uri": "http://d/"}})))
    assert load(path).name == "x"
    path.write_text("---\n" + yaml.safe_dump(manifest()) + "---\n" + yaml.safe_dump(manifest()))
    with pytest.raises(ManifestError, match="exactly one"):
        load(path)
