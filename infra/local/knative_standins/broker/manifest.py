"""Parse the Brokers, RabbitmqBrokerConfigs and Triggers of knative/, strictly.

The JSON schemas in infra/schemas validate the fields a cluster accepts (infra/tests); this module
is the model of what the local data plane runs, and refuses what it would silently ignore: a
Broker of another class, a filter on something other than exact attributes, an annotation it does
not know, a Trigger naming a Broker that does not exist. Defaults mirror eventing-rabbitmq
(pkg/reconciler/trigger: a Trigger without `delivery` uses its Broker's; the parallelism annotation
defaults to 1; queue type defaults to quorum; the cpu-request / cpu-limit annotations give the
ingress's and each dispatcher's pod its CPU, none when absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import ConfigError
from ..delivery.spec import Delivery, Destination, ManifestReader
from ..pod_cpu import NO_CPU, CpuQuantityError, PodCpu

BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
BROKER_CLASS = "RabbitMQBroker"
PARALLELISM_ANNOTATION = "rabbitmq.eventing.knative.dev/parallelism"
CPU_REQUEST_ANNOTATION = "rabbitmq.eventing.knative.dev/cpu-request"
CPU_LIMIT_ANNOTATION = "rabbitmq.eventing.knative.dev/cpu-limit"
CPU_ANNOTATIONS = {CPU_REQUEST_ANNOTATION, CPU_LIMIT_ANNOTATION}
CONFIG_API_VERSION = "eventing.knative.dev/v1alpha1"
QUORUM, CLASSIC = "quorum", "classic"
# eventing-rabbitmq's dispatcher has no per-attempt timeout unless `delivery.timeout` is set
# (a feature-flagged field); locally a hung subscriber must not hold a message forever.
LOCAL_TIMEOUT_S = 30.0
# The filter binds on message headers, which carry only attribute values: exact match only.
FILTER_ATTRIBUTE_MAX = 20


class ManifestError(ConfigError):
    """A manifest the local Broker cannot run; the message names the file and the field path."""


@dataclass(frozen=True)
class BrokerConfig:
    name: str
    namespace: str
    queue_type: str
    cluster_name: str


@dataclass(frozen=True)
class Broker:
    path: Path
    name: str
    namespace: str
    config: BrokerConfig
    delivery: Delivery | None
    cpu: PodCpu = NO_CPU  # the ingress pod's


@dataclass(frozen=True)
class Trigger:
    path: Path
    name: str
    namespace: str
    broker: str
    filters: dict[str, str]
    subscriber: Destination
    delivery: Delivery | None
    parallelism: int = 1
    cpu: PodCpu = NO_CPU  # the dispatcher pod's


@dataclass(frozen=True)
class Notifications:
    """Everything of one Broker: itself and the Triggers that name it."""

    broker: Broker
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)

    def delivery_of(self, trigger: Trigger) -> Delivery:
        """The Trigger's delivery, else its Broker's, else none: one attempt, no dead letters."""
        return trigger.delivery or self.broker.delivery or Delivery(retry=0, timeout_s=LOCAL_TIMEOUT_S)

    def trigger(self, name: str) -> Trigger:
        for trigger in self.triggers:
            if trigger.name == name:
                return trigger
        known = ", ".join(t.name for t in self.triggers) or "none"
        raise ManifestError(f"Broker {self.broker.name} has no Trigger {name!r} (known: {known})")


class _Reader(ManifestReader):
    """The KafkaSource reader's checks (mappings, Destinations, DeliverySpecs) plus metadata."""

    error = ManifestError

    def delivery(self, value: Any, where: str, default_timeout_s: float = LOCAL_TIMEOUT_S) -> Delivery:
        return super().delivery(value, where, default_timeout_s)

    def metadata(self, top: dict, annotations: set[str]) -> tuple[str, str, dict[str, str]]:
        metadata = self.mapping(
            top["metadata"], "metadata", {"name", "namespace", "labels", "annotations"}, {"name"}
        )
        found = metadata.get("annotations") or {}
        for key in found:
            if key not in annotations:
                raise self.fail(
                    f"metadata.annotations.{key}",
                    f"unknown annotation (known: {', '.join(sorted(annotations))})",
                )
        return (
            self.string(metadata["name"], "metadata.name"),
            self.string(metadata.get("namespace", "default"), "metadata.namespace"),
            {str(k): str(v) for k, v in found.items()},
        )


def _config(document: dict, reader: _Reader) -> BrokerConfig:
    name, namespace, _ = reader.metadata(document, set())
    spec = reader.mapping(document["spec"], "spec", {"rabbitmqClusterReference", "queueType", "vhost"})
    if spec.get("vhost", "/") != "/":
        raise reader.fail("spec.vhost", "only the default vhost / runs locally")
    reference = reader.mapping(
        spec.get("rabbitmqClusterReference"),
        "spec.rabbitmqClusterReference",
        {"name", "namespace", "connectionSecret"},
    )
    if "name" not in reference:
        raise reader.fail(
            "spec.rabbitmqClusterReference.name", "is required locally (connectionSecret is not supported)"
        )
    queue_type = spec.get("queueType", QUORUM)
    if queue_type not in (QUORUM, CLASSIC):
        raise reader.fail("spec.queueType", f"must be {QUORUM} or {CLASSIC}")
    return BrokerConfig(
        name, namespace, queue_type, reader.string(reference["name"], "spec.rabbitmqClusterReference.name")
    )


def _broker(document: dict, reader: _Reader, configs: dict[tuple[str, str], BrokerConfig]) -> Broker:
    name, namespace, annotations = reader.metadata(document, {BROKER_CLASS_ANNOTATION, *CPU_ANNOTATIONS})
    if annotations.get(BROKER_CLASS_ANNOTATION) != BROKER_CLASS:
        raise reader.fail(f"metadata.annotations.{BROKER_CLASS_ANNOTATION}", f"must be {BROKER_CLASS}")
    spec = reader.mapping(document["spec"], "spec", {"config", "delivery"}, {"config"})
    ref = reader.mapping(
        spec["config"],
        "spec.config",
        {"apiVersion", "kind", "name", "namespace"},
        {"apiVersion", "kind", "name"},
    )
    if ref["apiVersion"] != CONFIG_API_VERSION or ref["kind"] != "RabbitmqBrokerConfig":
        raise reader.fail("spec.config", f"must reference a {CONFIG_API_VERSION} RabbitmqBrokerConfig")
    config = configs.get((ref.get("namespace", namespace), ref["name"]))
    if config is None:
        raise reader.fail("spec.config.name", f"there is no RabbitmqBrokerConfig {ref['name']!r} in knative/")
    delivery = reader.delivery(spec["delivery"], "spec.delivery") if "delivery" in spec else None
    return Broker(reader.path, name, namespace, config, delivery, _cpu(annotations, reader))


def _trigger(document: dict, reader: _Reader) -> Trigger:
    name, namespace, annotations = reader.metadata(document, {PARALLELISM_ANNOTATION, *CPU_ANNOTATIONS})
    spec = reader.mapping(
        document["spec"], "spec", {"broker", "filter", "subscriber", "delivery"}, {"broker", "subscriber"}
    )
    filters: dict[str, str] = {}
    if "filter" in spec:
        block = reader.mapping(spec["filter"], "spec.filter", {"attributes"})
        attributes = block.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise reader.fail("spec.filter.attributes", "must be a mapping of attribute name to exact value")
        for key, value in attributes.items():
            if not isinstance(key, str) or key.startswith("x-") or not key:
                raise reader.fail(f"spec.filter.attributes.{key}", "must be a CloudEvent attribute name")
            filters[key] = reader.string(value, f"spec.filter.attributes.{key}")
    raw = annotations.get(PARALLELISM_ANNOTATION, "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise reader.fail(
            f"metadata.annotations.{PARALLELISM_ANNOTATION}", "must be a whole number from 1 to 1000"
        )
    return Trigger(
        path=reader.path,
        name=name,
        namespace=namespace,
        broker=reader.string(spec["broker"], "spec.broker"),
        filters=filters,
        subscriber=reader.destination(spec["subscriber"], "spec.subscriber"),
        delivery=reader.delivery(spec["delivery"], "spec.delivery") if "delivery" in spec else None,
        parallelism=int(raw),
        cpu=_cpu(annotations, reader),
    )


def _cpu(annotations: dict[str, str], reader: _Reader) -> PodCpu:
    """The pod's CPU from eventing-rabbitmq's resource annotations (utils/resource_requirements.go)."""
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for annotation, kind in ((CPU_REQUEST_ANNOTATION, "requests"), (CPU_LIMIT_ANNOTATION, "limits")):
        if annotation in annotations:
            resources[kind]["cpu"] = annotations[annotation]
    try:
        cpu = PodCpu.from_resources(resources, "")
    except CpuQuantityError:
        raise reader.fail(
            "metadata.annotations", "a CPU annotation must be a quantity: 250m, 0.5, 1"
        ) from None
    if cpu.limit_milli is not None and cpu.request_milli > cpu.limit_milli:
        raise reader.fail(f"metadata.annotations.{CPU_REQUEST_ANNOTATION}", "must not exceed the cpu-limit")
    return cpu


def load_all(paths: list[Path]) -> list[Notifications]:
    """Every RabbitMQ Broker of the given files with its Triggers, in name order."""
    documents: list[tuple[Path, dict]] = []
    for path in paths:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as error:
            raise ManifestError(f"{path}: cannot be read as YAML: {error}") from None
        for document in loaded:
            if not isinstance(document, dict) or document.get("kind") not in (
                "Broker",
                "Trigger",
                "RabbitmqBrokerConfig",
            ):
                continue
            reader = _Reader(path)
            reader.mapping(
                document,
                "",
                {"apiVersion", "kind", "metadata", "spec"},
                {"apiVersion", "kind", "metadata", "spec"},
            )
            documents.append((path, document))
    configs = {}
    for path, document in documents:
        if document["kind"] == "RabbitmqBrokerConfig":
            config = _config(document, _Reader(path))
            configs[(config.namespace, config.name)] = config
    brokers = {}
    for path, document in documents:
        if document["kind"] == "Broker":
            broker = _broker(document, _Reader(path), configs)
            brokers[(broker.namespace, broker.name)] = broker
    triggers: dict[tuple[str, str], list[Trigger]] = {key: [] for key in brokers}
    for path, document in documents:
        if document["kind"] == "Trigger":
            trigger = _trigger(document, _Reader(path))
            key = (trigger.namespace, trigger.broker)
            if key not in brokers:
                raise ManifestError(
                    f"{path}: spec.broker: there is no Broker {trigger.broker!r} in {trigger.namespace}"
                )
            triggers[key].append(trigger)
    return [
        Notifications(brokers[key], tuple(sorted(triggers[key], key=lambda t: t.name)))
        for key in sorted(brokers)
    ]


def knative_manifests(knative_dir: Path) -> list[Path]:
    return sorted(knative_dir.glob("*/*.yaml"))
