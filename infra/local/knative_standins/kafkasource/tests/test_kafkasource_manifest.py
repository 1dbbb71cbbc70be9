"""kafkasource.manifest: KafkaSources parsed strictly, with Knative's defaults; every manifest of
knative/ is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from knative_standins.delivery.spec import Delivery, ManifestError
from knative_standins.kafkasource.manifest import DEFAULT_DELIVERY, load, parse

REPO = Path(__file__).resolve().parents[5]

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


@pytest.mark.parametrize("path", sorted((REPO / "knative").glob("*/kafkasource.yaml")), ids=str)
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


def test_manifest_yaml_round_trip(tmp_path):
    path = tmp_path / "kafkasource.yaml"
    path.write_text(yaml.safe_dump(manifest(delivery={"retry": 1, "deadLetterSink": {"uri": "http://d/"}})))
    assert load(path).name == "x"
    path.write_text("---\n" + yaml.safe_dump(manifest()) + "---\n" + yaml.safe_dump(manifest()))
    with pytest.raises(ManifestError, match="exactly one"):
        load(path)
