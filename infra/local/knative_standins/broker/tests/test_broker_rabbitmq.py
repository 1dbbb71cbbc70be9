"""The notifications Broker on the real RabbitMQ: failures, counted (never timed).

- RabbitMQ stopped: the ingress answers 503 problem+json, order-alerts answers a retryable 503,
  and once RabbitMQ is back every flagged order is e-mailed exactly once and stored once;
- RabbitMQ restarted with messages queued: nothing is lost;
- the notifier failing (its SMTP server down): retries, then a dead letter with the Knative
  error extensions (on a private Trigger with a short delivery: the live one retries 133 s); a
  notifier that comes back after a few failures sends once;
- PostgreSQL stopped 60 s (the seed's drill) under a steady flow of alerts: the live Trigger's
  delivery outlasts it, so nothing is dead-lettered and every alert is mailed once and recorded
  once (issue 19);
- a Trigger's filter matches only what it names.
Each test waits for outcomes (rows, mail files, counters) and compares counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pika
import pytest
import yaml
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from knative_standins.broker import manifest
from knative_standins.broker.topology import (
    binding_arguments,
    dead_letter_exchange_name,
    dead_letter_queue_name,
    exchange_name,
    queue_name,
)
from loadtest.broker.bench import broker_documents
from loadtest.measure import free_port
from ripple_events.samples import ORDER_PLACED, cloud_event
from ripple_stack.components.functions import knative_functions, standin_addresses
from ripple_stack.settings import REPO_ROOT

pytestmark = pytest.mark.integration

FLAGGED = "dev.ripple.shop.order.flagged"
# The order-alerts function's alert source (knative/order-alerts: ALERT_SOURCE default).
ALERT_SOURCE = "/ripple/order-alerts"
TRIGGERS = REPO_ROOT / "knative/notifications/triggers.yaml"
T = TypeVar("T")


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 240.0) -> None:
    """Poll until condition holds; the limit only turns a hang into a failure.

    Other tests stop PostgreSQL or Kafka on purpose: a server that is briefly down means "not yet".
    """
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if condition():
                return
        except (OperationalError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def patiently(read: Callable[[], T]) -> T:
    """The value of read(), retried while PostgreSQL is briefly down (another test's drill)."""
    for _ in range(120):
        try:
            return read()
        except OperationalError:
            time.sleep(1)
    return read()


@pytest.fixture(scope="module")
def ingress_url(stack) -> str:
    return f"http://{stack.settings.host}:{stack.settings.ports['broker_ingress']}/"


def post(url: str, event: CloudEvent) -> tuple[int, str, bytes]:
    headers, body = to_binary(event)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def flagged(order_id: str, source: str = "/test/broker", event_type: str = FLAGGED) -> CloudEvent:
    data = json.dumps({"orderId": order_id, "amount": 5000, "currency": "EUR"}).encode()
    return cloud_event(event_type, data, source)


def mails_for(stack, event_id: str) -> int:
    """How many mails in the sink carry this event id."""
    header = f"\nX-Ripple-Event-Id: {event_id}\r\n".encode()
    count = 0
    for path in Path(stack.settings.mail_dir).glob("*.eml"):
        with path.open("rb") as mail:
            if header in mail.read(4096):  # the headers: the sink may hold thousands of mails
                count += 1
    return count


def rows(database, table: str, source: str, event_id: str) -> int:
    def read() -> int:
        with database.connect() as connection:
            return connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE source = :s AND id = :i"),
                {"s": source, "i": event_id},
            ).scalar_one()

    return patiently(read)


def metric(stack, component_port: str, offset: int, name: str, **labels: str) -> float:
    port = stack.settings.ports[component_port] + offset
    with urllib.request.urlopen(f"http://{stack.settings.host}:{port}/metrics", timeout=10) as response:
        text_format = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text_format):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def notifier_metric(stack, name: str, **labels: str) -> float:
    # The one Trigger dispatcher (knative/notifications/triggers.yaml) has the first port.
    return metric(stack, "trigger_dispatchers", 0, name, trigger="notifier", **labels)


def settled(stack) -> bool:
    """The notifier Trigger's queue is empty and nothing is in flight."""
    depth = metric(stack, "trigger_dispatchers", 0, "ripple_trigger_queue_depth", trigger="notifier")
    busy = metric(stack, "trigger_dispatchers", 0, "ripple_trigger_in_flight", trigger="notifier")
    return not depth and not busy


def test_a_flagged_event_is_mailed_once_and_recorded_once(stack, ingress_url, database):
    event = flagged("o-" + uuid.uuid4().hex[:8])
    status, _, _ = post(ingress_url, event)
    assert status == 202
    wait_until(lambda: mails_for(stack, event["id"]) == 1, "the mail")
    # A redelivery of the same event (as after a lost ack) sends nothing more.
    assert post(ingress_url, event)[0] == 202
    wait_until(lambda: settled(stack), "the Trigger to settle")
    assert mails_for(stack, event["id"]) == 1
    assert rows(database, "notifications", "/test/broker", event["id"]) == 1


def test_a_trigger_filter_matches_only_what_it_names(stack, ingress_url):
    """The notifier Trigger's binding, on a queue of the test's own: only flagged events arrive."""
    (notifications,) = manifest.load_all(manifest.knative_manifests(REPO_ROOT / "knative"))
    trigger = notifications.trigger("notifier")
    connection = pika.BlockingConnection(
        pika.URLParameters(stack.settings.amqp_url(stack.secrets["RIPPLE_RABBITMQ_PASSWORD"]))
    )
    try:
        channel = connection.channel()
        probe = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(probe, exchange_name(notifications.broker), arguments=binding_arguments(trigger))
        other = flagged("o-other", event_type="dev.ripple.shop.order.placed")
        named = flagged("o-named")
        # The other event is confirmed (202), hence routed, before the named one is sent.
        assert post(ingress_url, other)[0] == 202
        assert post(ingress_url, named)[0] == 202
        received = []
        for _method, properties, _body in channel.consume(probe, auto_ack=True, inactivity_timeout=30):
            if properties is None:
                break
            received.append(properties.headers["id"])
            if properties.headers["id"] == named["id"]:
                break
        assert received == [named["id"]]
    finally:
        connection.close()


def test_rabbitmq_down_gives_503s_then_every_flagged_order_is_mailed_once(stack, ingress_url, database):
    """order-alerts is called over HTTP exactly as its KafkaSource calls it, and called again
    after each failure as the KafkaSource retries (its own tests cover that retry loop; driving
    it here through Kafka would wait behind whatever backlog the shared topic has)."""
    # A tenant of its own: these alerts also reach the event store.
    tenant = "test-broker"
    orders = [f"o-down-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    order_events = [
        cloud_event(
            ORDER_PLACED,
            {"orderId": order_id, "amount": 5000, "currency": "EUR"},
            "/test/broker-down",
            tenant=tenant,
            partitionkey=f"{tenant}/{order_id}",
        )
        for order_id in orders
    ]
    order_alerts = f"http://{stack.settings.host}:{stack.settings.ports['order-alerts']}/"
    with stack.stopped("rabbitmq"):
        status, content_type, body = post(ingress_url, flagged("o-refused"))
        assert (status, content_type) == (503, "application/problem+json")
        assert json.loads(body)["type"] == "https://ripple.dev/problems/broker-unavailable"
        for event in order_events:
            # A retryable failure (503): the KafkaSource retries, the offset stays uncommitted.
            status, content_type, body = post(order_alerts, event)
            assert (status, content_type) == (503, "application/problem+json")
            assert json.loads(body)["type"] == "https://ripple.dev/problems/broker-unavailable"
    # RabbitMQ is back: the retries succeed.
    for event in order_events:
        wait_until(lambda event=event: post(order_alerts, event)[0] in (200, 204), "order-alerts to accept")

    def alert_ids() -> list[str]:
        with database.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT alert_id FROM order_alerts WHERE tenant = :t AND order_id = ANY(:o) "
                        "AND emitted_at IS NOT NULL"
                    ),
                    {"t": tenant, "o": orders},
                ).scalars()
            )

    ids = patiently(alert_ids)
    assert len(ids) == 3
    wait_until(lambda: all(mails_for(stack, i) >= 1 for i in ids), "the three mails")
    stored = "the stored alerts (from ripple.shop.alerts)"
    wait_until(lambda: all(rows(database, "events", ALERT_SOURCE, i) == 1 for i in ids), stored)
    wait_until(lambda: settled(stack), "the Trigger to settle")
    assert [mails_for(stack, i) for i in ids] == [1, 1, 1]
    assert [rows(database, "notifications", ALERT_SOURCE, i) for i in ids] == [1, 1, 1]
    assert [rows(database, "events", ALERT_SOURCE, i) for i in ids] == [1, 1, 1]


def queue_depth(stack, queue: str) -> int:
    connection = pika.BlockingConnection(
        pika.URLParameters(stack.settings.amqp_url(stack.secrets["RIPPLE_RABBITMQ_PASSWORD"]))
    )
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_a_rabbitmq_restart_loses_no_queued_message(stack, ingress_url, database):
    events = [flagged(f"o-queued-{n}") for n in range(20)]
    with stack.stopped("trigger-notifier"):
        before = queue_depth(stack, "t.ripple.notifier")
        for event in events:
            assert post(ingress_url, event)[0] == 202
        # At least: on the shared stack other tests' flagged events may arrive meanwhile.
        queued = queue_depth(stack, "t.ripple.notifier")
        assert queued >= before + 20
        stack.stop("rabbitmq")
        stack.start("rabbitmq")
        assert queue_depth(stack, "t.ripple.notifier") >= queued
    wait_until(lambda: all(mails_for(stack, e["id"]) >= 1 for e in events), "the 20 mails")
    wait_until(lambda: settled(stack), "the Trigger to settle")
    assert [mails_for(stack, e["id"]) for e in events] == [1] * 20
    assert sum(rows(database, "notifications", "/test/broker", e["id"]) for e in events) == 20


def dead_letter(database, event_id: str) -> dict | None:
    def read() -> dict | None:
        with database.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT error_dest, error_code, error_data FROM dead_letters"
                    " WHERE source = :s AND id = :i"
                ),
                {"s": "/test/broker", "i": event_id},
            ).first()
        return dict(row._mapping) if row else None

    return patiently(read)


@pytest.fixture
def short_delivery_trigger(stack, tmp_path):
    """A private Broker whose notifier Trigger gives up after 5 quick retries (the live one
    retries for 133 s): (its ingress URL, its dispatcher's metrics port). Removed afterwards."""
    broker = f"test-{uuid.uuid4().hex[:6]}"
    live = {d["metadata"]["name"]: d for d in yaml.safe_load_all(TRIGGERS.read_text())}["notifier"]
    functions = {f.name: f.url(stack.settings) for f in knative_functions()}
    notifier_url, dead_letters_url = functions["notifier"], functions["dead-letters"]
    documents = [
        *broker_documents(broker),
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": f"{broker}-notifier", "namespace": "ripple"},
            "spec": {
                "broker": broker,
                "filter": live["spec"]["filter"],
                "subscriber": {"uri": notifier_url},
                "delivery": {
                    "retry": 5,
                    "backoffPolicy": "exponential",
                    "backoffDelay": "PT0.2S",
                    "deadLetterSink": {"uri": dead_letters_url},
                },
            },
        },
    ]
    (tmp_path / broker).mkdir()
    (tmp_path / broker / "broker.yaml").write_text(yaml.safe_dump_all(documents))
    (notifications,) = manifest.load_all(sorted(tmp_path.glob("*/*.yaml")))
    (trigger,) = notifications.triggers
    ingress_port, metrics_port = free_port(), free_port()
    log = (stack.settings.log_dir / "test-broker-private.log").open("ab")
    command = [sys.executable, "-m", "knative_standins.broker"]
    manifests = ["--manifests", str(tmp_path)]
    # What the runner hands every stand-in: RabbitMQ's URL and the Knative Services' addresses.
    env = {
        **os.environ,
        **standin_addresses(stack.settings).to_env(),
        "RIPPLE_BROKER_HOST": stack.settings.host,
        "RIPPLE_BROKER_AMQP_URL": stack.settings.amqp_url(stack.secrets["RIPPLE_RABBITMQ_PASSWORD"]),
    }
    processes = [
        subprocess.Popen(
            [*command, "ingress", broker, *manifests, "--port", str(ingress_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
        ),
        subprocess.Popen(
            [*command, "dispatch", broker, trigger.name, *manifests, "--metrics-port", str(metrics_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
        ),
    ]
    try:
        ingress_url = f"http://{stack.settings.host}:{ingress_port}/"
        wait_until(
            lambda: urllib.request.urlopen(ingress_url + "healthz", timeout=2).status == 200,
            "the private ingress",
            60,
        )
        wait_until(
            lambda: metric_at(stack, metrics_port, "ripple_trigger_connected") == 1,
            "the private dispatcher",
            60,
        )
        yield ingress_url, metrics_port
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        log.close()
        connection = pika.BlockingConnection(
            pika.URLParameters(stack.settings.amqp_url(stack.secrets["RIPPLE_RABBITMQ_PASSWORD"]))
        )
        try:
            channel = connection.channel()
            for name in (queue_name(trigger), dead_letter_queue_name(trigger)):
                channel.queue_delete(name)
            for name in (exchange_name(notifications.broker), dead_letter_exchange_name(trigger)):
                channel.exchange_delete(name)
        finally:
            connection.close()


def metric_at(stack, port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://{stack.settings.host}:{port}/metrics", timeout=10) as response:
        text_format = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text_format)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_a_failing_notifier_is_retried_then_dead_lettered_with_the_error_extensions(
    stack, short_delivery_trigger, database
):
    private_ingress, metrics_port = short_delivery_trigger
    event = flagged("o-dead")
    with stack.stopped("mail-sink"):
        assert post(private_ingress, event)[0] == 202
        wait_until(lambda: dead_letter(database, event["id"]) is not None, "the dead letter")
    letter = dead_letter(database, event["id"])
    notifier_url = f"http://{stack.settings.host}:{stack.settings.ports['notifier']}"
    assert letter["error_dest"] == notifier_url
    assert letter["error_code"] == "503"
    assert letter["error_data"]  # the notifier's problem+json, as Knative passes it
    # The Trigger's delivery: 5 retries before giving up.
    assert metric_at(stack, metrics_port, "ripple_trigger_events_retried_total") >= 5
    assert mails_for(stack, event["id"]) == 0
    # The outbox row was recorded before the first send and never marked sent.
    assert state_of(database, "/test/broker", event["id"]) == "pending"


def state_of(database, source: str, event_id: str) -> str | None:
    def read() -> str | None:
        with database.connect() as connection:
            return connection.execute(
                text("SELECT state FROM notifications WHERE source = :s AND id = :i"),
                {"s": source, "i": event_id},
            ).scalar_one_or_none()

    return patiently(read)


def test_a_notifier_back_after_a_few_failures_sends_once(stack, ingress_url, database):
    event = flagged("o-flaky")
    retried = notifier_metric(stack, "ripple_trigger_events_retried_total")
    with stack.stopped("mail-sink"):
        assert post(ingress_url, event)[0] == 202
        wait_until(lambda: notifier_metric(stack, "ripple_trigger_events_retried_total") > retried, "a retry")
    wait_until(lambda: mails_for(stack, event["id"]) == 1, "the mail")
    wait_until(lambda: settled(stack), "the Trigger to settle")
    assert mails_for(stack, event["id"]) == 1
    assert rows(database, "notifications", "/test/broker", event["id"]) == 1
    assert dead_letter(database, event["id"]) is None


def mails_by_event(stack, source: str) -> dict[str, int]:
    """Mails in the sink per event id, for the events of one source (one pass over the folder)."""
    marker = f"\nX-Ripple-Event-Source: {source}\r\n".encode()
    counts: dict[str, int] = {}
    for path in Path(stack.settings.mail_dir).glob("*.eml"):
        try:
            head = path.read_bytes()[:4096]
        except FileNotFoundError:
            continue
        if marker in head:
            event_id = head.split(b"\nX-Ripple-Event-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            counts[event_id] = counts.get(event_id, 0) + 1
    return counts


def counts_by_event(database, table: str, source: str) -> dict[str, int]:
    def read() -> dict[str, int]:
        with database.connect() as connection:
            condition = " AND state = 'sent'" if table == "notifications" else ""
            return dict(
                connection.execute(
                    text(f"SELECT id, count(*) FROM {table} WHERE source = :s{condition} GROUP BY id"),
                    {"s": source},
                ).all()
            )

    return patiently(read)


@pytest.mark.integration
def test_a_60_s_postgres_outage_under_load_dead_letters_nothing(stack, ingress_url, database):
    """Issue 19: the seed's drill (PostgreSQL down 60 s) while alerts keep arriving, 20 a second,
    through the live Broker and its Trigger: the notifier answers 503 throughout, the Trigger's
    delivery (36 linear retries from 0.2 s, 133 s) outlasts it, and afterwards every alert is mailed once and
    recorded `sent` once, with no dead letter. About 100 s. (Alerts posted straight to the Broker
    are not stored: the history reaches event-store from ripple.shop.alerts, triggers.yaml.)"""
    source = f"/test/broker-outage-{uuid.uuid4().hex[:6]}"
    events: list[CloudEvent] = []
    refused: list[int] = []
    stop = threading.Event()

    def offer() -> None:  # 20 alerts/s until told to stop; the ingress needs no PostgreSQL
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            event = flagged(f"o-outage-{n}", source=source)
            status = post(ingress_url, event)[0]
            (events if status == 202 else refused).append(event if status == 202 else status)
            n += 1
            time.sleep(max(0.0, started + n / 20 - time.monotonic()))

    sender = threading.Thread(target=offer)
    sender.start()
    try:
        time.sleep(5)
        with stack.stopped("postgres"):
            time.sleep(60)
        time.sleep(5)
    finally:
        stop.set()
        sender.join()
    assert refused == [] and len(events) >= 1400
    ids = {e["id"] for e in events}
    wait_until(
        lambda: set(counts_by_event(database, "notifications", source)) == ids, "every alert sent", 300
    )
    wait_until(lambda: settled(stack), "the Trigger to settle")
    with database.connect() as connection:
        dead = connection.execute(
            text("SELECT count(*) FROM dead_letters WHERE source = :s"), {"s": source}
        ).scalar_one()
    assert dead == 0
    assert set(counts_by_event(database, "notifications", source).values()) == {1}
    mailed = mails_by_event(stack, source)
    assert set(mailed) == ids
    assert sorted(set(mailed.values())) == [1]
