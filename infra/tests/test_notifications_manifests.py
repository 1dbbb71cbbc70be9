"""The notifications Broker's manifests and the pure parts of its local data plane (no server).

knative/notifications/ and infra/rabbitmq/ validate against their vendored schemas (strictly:
an unknown field is an error) and parse into the model the local Broker runs; the model refuses
what it would silently ignore; Trigger filters become the headers-exchange bindings of
eventing-rabbitmq; CloudEvents survive the trip through an AMQP message; and the ingress
answers 503 problem+json when RabbitMQ cannot be reached.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cloudevents.http import CloudEvent
from prometheus_client import CollectorRegistry
from test_manifests import schema_problem

from knative_standins.broker import manifest
from knative_standins.broker.ingress import Ingress, serve
from knative_standins.broker.message import NotACloudEvent, from_message, to_message
from knative_standins.broker.topology import binding_arguments, exchange_name, queue_arguments, queue_name
from knative_standins.delivery.policy import backoff_s
from knative_standins.kafkasource.manifest import load as load_kafkasource
from knative_standins.pod_cpu import PodCpu
from loadtest.measure import free_port
from ripple_events.samples import ORDER_FLAGGED, cloud_event
from ripple_stack.components.brokers import broker_components
from ripple_stack.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "infra" / "local" / "knative_standins" / "broker" / "tests"))
from broker_testkit import BROKER, load, trigger

NOTIFICATIONS = REPO_ROOT / "knative" / "notifications"
FILES = [*sorted(NOTIFICATIONS.glob("*.yaml")), REPO_ROOT / "infra" / "rabbitmq" / "cluster.yaml"]


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_manifests_match_their_vendored_schemas(path):
    for index, document in enumerate(documents(path)):
        assert schema_problem(f"{path.name}#{index}", document) is None


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        (
            "RabbitmqBrokerConfig",
            {"queueType": "quorum", "rabbitmqClusterReference": {"name": "x"}, "typo": 1},
        ),
        ("RabbitmqBrokerConfig", {"queueType": "stream"}),
        (
            "Trigger",
            {"broker": "notifications", "subscriber": {"ref": {"kind": "Service", "name": "n"}}, "x": 1},
        ),
        ("Broker", {"config": {"name": "c"}, "delivery": {"retries": 3}}),
    ],
)
def test_the_schemas_refuse_unknown_fields_and_values(kind, spec):
    api = "eventing.knative.dev/v1alpha1" if kind == "RabbitmqBrokerConfig" else "eventing.knative.dev/v1"
    document = {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "n", "namespace": "ripple"},
        "spec": spec,
    }
    assert schema_problem("test", document) is not None


def test_the_notifications_broker_and_its_triggers():
    (notifications,) = manifest.load_all(manifest.knative_manifests(REPO_ROOT / "knative"))
    broker = notifications.broker
    assert (broker.name, broker.namespace, broker.config.queue_type) == ("notifications", "ripple", "quorum")
    assert broker.config.cluster_name == "ripple-rabbitmq"
    triggers = {t.name: t for t in notifications.triggers}
    assert triggers["notifier"].filters == {"type": "dev.ripple.shop.order.flagged"}
    assert triggers["notifier"].subscriber.ref_name == "notifier"
    assert triggers["notifier"].parallelism == 128  # the notifier's slots and half again (triggers.yaml)
    # The Trigger's dispatcher weighs as order-alerts, the notifier and event-store do (250m) and more than a
    # BestEffort pod when CPU is short (issue 19; triggers.yaml).
    assert triggers["notifier"].cpu == PodCpu(250, 1000)
    assert broker.cpu == PodCpu(500, 1000)  # every alert waits for its answer: as much as RabbitMQ
    # One Trigger: the history reaches event-store from ripple.shop.alerts (triggers.yaml says why).
    assert sorted(triggers) == ["notifier"]
    delivery = notifications.broker.delivery  # for a Trigger without its own
    assert delivery.retry == 36 and delivery.dead_letter_sink.ref_name == "dead-letters"


def waits_before_dead_letter(delivery) -> float:
    """Seconds a delivery spec waits between its attempts before giving up (attempts' own time aside)."""
    return sum(backoff_s(delivery, n) for n in range(1, delivery.retry + 1))


# The seed's longest failure drill: PostgreSQL stopped for 60 s (loadtest/scenarios, issue 19).
LONGEST_DRILL_S = 60


def test_every_delivery_spec_outlasts_the_longest_drill_twice_and_idles_at_most_7_5_s():
    """Issue 19: nothing is dead-lettered during a drill, and nothing waits long once it ends."""
    (notifications,) = manifest.load_all(manifest.knative_manifests(REPO_ROOT / "knative"))
    deliveries = {f"Trigger {t.name}": notifications.delivery_of(t) for t in notifications.triggers}
    deliveries["Broker notifications"] = notifications.broker.delivery  # any Trigger without its own
    for path in sorted((REPO_ROOT / "knative").glob("*/kafkasource.yaml")):
        deliveries[f"KafkaSource {path.parent.name}"] = load_kafkasource(path).delivery
    assert len(deliveries) == 4
    for name, delivery in deliveries.items():
        assert waits_before_dead_letter(delivery) >= 2 * LONGEST_DRILL_S, name
        assert backoff_s(delivery, delivery.retry) <= 7.5, name  # the longest wait after an outage
        assert delivery.dead_letter_sink is not None, name


def test_every_broker_and_trigger_is_a_component_of_the_stack():
    ingresses, dispatchers = broker_components()
    assert [c.name for c in ingresses] == ["broker-notifications"]
    assert [c.name for c in dispatchers] == ["trigger-notifier"]
    assert all(c.start_tier == 2 for c in dispatchers)


TRIGGER = trigger("{ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s}}")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (BROKER.replace("RabbitMQBroker", "MTChannelBasedBroker"), "must be RabbitMQBroker"),
        (BROKER.replace("name: r}", "name: r}, vhost: other"), "only the default vhost"),
        (BROKER + TRIGGER.replace("broker: b", "broker: missing"), "no Broker 'missing'"),
        (
            BROKER
            + TRIGGER.replace("{name: t, namespace: ns}", "{name: t, namespace: ns, annotations: {a/b: c}}"),
            "unknown annotation",
        ),
        (
            BROKER
            + TRIGGER.replace(
                "namespace: ns}",
                "namespace: ns, annotations: {rabbitmq.eventing.knative.dev/parallelism: '0'}}",
            ),
            "whole number from 1 to 1000",
        ),
        (
            BROKER + TRIGGER + "  filter: {attributes: {x-match: any}}\n",
            "must be a CloudEvent attribute name",
        ),
        (BROKER + TRIGGER + "  filters: [{exact: {type: a}}]\n", "unknown or unsupported field"),
        (
            BROKER
            + TRIGGER.replace(
                "namespace: ns}",
                "namespace: ns, annotations: {rabbitmq.eventing.knative.dev/cpu-request: lots}}",
            ),
            "must be a quantity",
        ),
        (
            BROKER
            + TRIGGER.replace(
                "namespace: ns}",
                "namespace: ns, annotations: {rabbitmq.eventing.knative.dev/cpu-request: '2', "
                "rabbitmq.eventing.knative.dev/cpu-limit: '1'}}",
            ),
            "must not exceed the cpu-limit",
        ),
        (BROKER + TRIGGER + "  delivery: {retry: -1}\n", "retry: must be a whole number"),
    ],
)
def test_the_model_refuses_what_it_would_ignore(tmp_path, text, complaint):
    with pytest.raises(manifest.ManifestError, match=complaint):
        load(tmp_path, text)


def test_defaults_follow_eventing_rabbitmq(tmp_path):
    notifications = load(tmp_path, BROKER + TRIGGER)
    (trigger,) = notifications.triggers
    assert trigger.parallelism == 1 and trigger.filters == {}
    assert trigger.cpu == notifications.broker.cpu == PodCpu()  # no annotations: a BestEffort pod
    assert notifications.broker.config.queue_type == "quorum"
    delivery = notifications.delivery_of(trigger)  # neither Trigger nor Broker has one
    assert delivery.retry == 0 and delivery.dead_letter_sink is None


def test_filters_become_headers_bindings_matching_all_attributes(tmp_path):
    notifications = load(tmp_path, BROKER + TRIGGER + "  filter: {attributes: {type: a.b, source: /s}}\n")
    (trigger,) = notifications.triggers
    assert binding_arguments(trigger) == {
        "x-match": "all",
        "x-knative-trigger": "t",
        "type": "a.b",
        "source": "/s",
    }
    assert exchange_name(notifications.broker) == "b.ns.b"
    assert queue_name(trigger) == "t.ns.t"
    assert queue_arguments(notifications.broker.config) == {"x-queue-type": "quorum"}


def flagged(**attributes: str) -> CloudEvent:
    return cloud_event(ORDER_FLAGGED, b'{"orderId":"o-1"}', **attributes)


def test_a_cloudevent_survives_the_amqp_message():
    event = flagged(subject="o-1")
    properties, body = to_message(event)
    assert properties.delivery_mode == 2 and properties.message_id == event["id"]
    assert properties.headers["type"] == "dev.ripple.shop.order.flagged"
    assert properties.headers["content-type"] == "application/json"
    back = from_message({**properties.headers, "x-death": "ignored"}, body)
    assert back.get_attributes() == event.get_attributes()
    assert back.get_data() == b'{"orderId":"o-1"}'


def test_a_message_without_the_required_attributes_is_not_an_event():
    with pytest.raises(NotACloudEvent, match="id, source, type"):
        from_message({"specversion": "1.0"}, b"")


@pytest.fixture
def ingress_without_rabbitmq(tmp_path):
    notifications = load(tmp_path, BROKER)
    # Nothing listens on this port: RabbitMQ is "down".
    ingress = Ingress(notifications.broker, f"amqp://u:p@127.0.0.1:{free_port()}/%2F", CollectorRegistry())
    server = serve(ingress, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_ingress_answers_503_problem_when_rabbitmq_is_down(ingress_without_rabbitmq):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/t",
        "ce-type": "t",
        "content-type": "text/plain",
    }
    status, response_headers, body = post(ingress_without_rabbitmq + "/", b"x", headers)
    assert status == 503
    assert response_headers["Content-Type"] == "application/problem+json"
    assert response_headers["Retry-After"] == "1"
    assert json.loads(body)["type"] == "https://ripple.dev/problems/broker-unavailable"


@pytest.mark.parametrize(
    ("path", "headers", "status", "slug"),
    [
        ("/", {"content-type": "application/json"}, 400, "invalid-cloudevent"),
        (
            "/other",
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t"},
            404,
            "not-found",
        ),
    ],
)
def test_the_ingress_refuses_bad_requests_with_a_problem(
    ingress_without_rabbitmq, path, headers, status, slug
):
    got, response_headers, body = post(ingress_without_rabbitmq + path, b"{}", headers)
    assert got == status
    assert response_headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"].endswith(slug)
