"""Parse and strictly validate a KafkaSource (sources.knative.dev/v1beta1) manifest.

The published CRD carries no schema (Knative's webhook validates in Go), so this module is the
project's model of the fields ripple uses. Anything it does not know is an error naming the file
and the path, so a typo never turns into a silently ignored setting. Defaults mirror Knative's
(control-plane/pkg/apis/sources/v1beta1/kafka_defaults.go and reconciler/source/source.go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..delivery.spec import (
    EXPONENTIAL,
    Delivery,
    Destination,
    ManifestError,
    ManifestReader,
)

API_VERSION = "sources.knative.dev/v1beta1"
KIND = "KafkaSource"
ORDERED, UNORDERED = "ordered", "unordered"
KEY_TYPE_LABEL = "kafkasources.sources.knative.dev/key-type"
# Annotations that only mean something to a cluster (KEDA scaling of the source's consumers).
CLUSTER_ANNOTATION_PREFIXES = ("autoscaling.knative.dev/", "keda.autoscaling.knative.dev/")


# Knative's source reconciler uses this delivery when a KafkaSource has no `delivery` at all.
DEFAULT_DELIVERY = Delivery(retry=10, backoff_policy=EXPONENTIAL, backoff_delay_s=0.3, timeout_s=600.0)


@dataclass(frozen=True)
class KafkaSource:
    path: Path
    name: str
    namespace: str
    bootstrap_servers: tuple[str, ...]
    topics: tuple[str, ...]
    consumer_group: str
    initial_offset: str
    ordering: str
    sink: Destination
    delivery: Delivery
    consumers: int = 1
    ce_overrides: dict[str, str] = field(default_factory=dict)


def parse(document: Any, path: Path) -> KafkaSource:
    """The KafkaSource a manifest declares, or ManifestError naming the field that is wrong."""
    reader = ManifestReader(path)
    top = reader.mapping(
        document, "", {"apiVersion", "kind", "metadata", "spec"}, {"apiVersion", "kind", "metadata", "spec"}
    )
    if top["apiVersion"] != API_VERSION or top["kind"] != KIND:
        raise reader.fail(
            "apiVersion/kind", f"expected {API_VERSION} {KIND}, got {top['apiVersion']} {top['kind']}"
        )
    metadata = reader.mapping(
        top["metadata"], "metadata", {"name", "namespace", "labels", "annotations"}, {"name"}
    )
    for key, value in (metadata.get("labels") or {}).items():
        if key == KEY_TYPE_LABEL and value != "string":
            raise reader.fail(
                f"metadata.labels.{key}", "only the default key type 'string' is supported locally"
            )
    for key in metadata.get("annotations") or {}:
        if not key.startswith(CLUSTER_ANNOTATION_PREFIXES):
            raise reader.fail(
                f"metadata.annotations.{key}",
                "unknown annotation (ordering is spec.ordering; scaling annotations are "
                "autoscaling.knative.dev/* and keda.autoscaling.knative.dev/*)",
            )
    spec = reader.mapping(
        top["spec"],
        "spec",
        {
            "bootstrapServers",
            "topics",
            "consumerGroup",
            "initialOffset",
            "ordering",
            "sink",
            "delivery",
            "consumers",
            "ceOverrides",
        },
        {"bootstrapServers", "topics", "consumerGroup", "sink"},
    )
    consumers = spec.get("consumers", 1)
    if not isinstance(consumers, int) or isinstance(consumers, bool) or consumers < 1:
        raise reader.fail("spec.consumers", "must be a whole number >= 1")
    overrides: dict[str, str] = {}
    if "ceOverrides" in spec:
        block = reader.mapping(spec["ceOverrides"], "spec.ceOverrides", {"extensions"})
        extensions = reader.mapping(
            block.get("extensions") or {}, "spec.ceOverrides.extensions", set(block.get("extensions") or {})
        )
        for key, value in extensions.items():
            if not re.fullmatch(r"[a-z0-9]{1,20}", str(key)):
                raise reader.fail(
                    f"spec.ceOverrides.extensions.{key}",
                    "extension names are 1-20 lowercase letters or digits",
                )
            overrides[str(key)] = reader.string(value, f"spec.ceOverrides.extensions.{key}")
    return KafkaSource(
        path=path,
        name=reader.string(metadata["name"], "metadata.name"),
        namespace=reader.string(metadata.get("namespace", "default"), "metadata.namespace"),
        bootstrap_servers=reader.strings(spec["bootstrapServers"], "spec.bootstrapServers"),
        topics=reader.strings(spec["topics"], "spec.topics"),
        consumer_group=reader.string(spec["consumerGroup"], "spec.consumerGroup"),
        # Knative defaults: initialOffset latest, ordering ordered.
        initial_offset=reader.choice(
            spec.get("initialOffset", "latest"), "spec.initialOffset", ("earliest", "latest")
        ),
        ordering=reader.choice(spec.get("ordering", ORDERED), "spec.ordering", (ORDERED, UNORDERED)),
        sink=reader.destination(spec["sink"], "spec.sink"),
        delivery=reader.delivery(spec["delivery"], "spec.delivery")
        if "delivery" in spec
        else DEFAULT_DELIVERY,
        consumers=consumers,
        ce_overrides=overrides,
    )


def load(path: Path) -> KafkaSource:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: cannot be read as YAML: {error}") from None
    if len(documents) != 1:
        raise ManifestError(f"{path}: expected exactly one KafkaSource document, found {len(documents)}")
    return parse(documents[0], path)
