"""The notifications Broker on the real RabbitMQ: failures, counted (never timed).

- RabbitMQ stopped: the ingress answers 503 problem+json, order-alerts answers a retryable 503,
  and once RabbitMQ is back every flagged order is e-mailed exactly once and stored once;
- RabbitMQ restarted with messages queued: nothing is lost;
- the notifier failing (its SMTP server down): retries, then a dead letter with the Knative
  error extensions; a notifier that comes back after a few failures sends once;
- a Trigger's filter matches only what it names.
Each test waits for outcomes (rows, mail files, counters) and compares counts.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pika
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from knative_standins.broker import manifest
from knative_standins.broker.topology import binding_arguments, exchange_name
from ripple_stack.settings import REPO_ROOT

pytestmark = pytest.mark.integration

FLAGGED = "dev.ripple.shop.order.flagged"
# The order-alerts function's alert source (knative/order-alerts: ALERT_SOURCE default).
ALERT_SOURCE = "/ripple/order-alerts"
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


@pytest.fixture(scope="module")
def database(stack):
    engine = create_engine(stack.postgres_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


def post(url: str, event: CloudEvent) -> tuple[int, str, bytes]:
    headers, body = to_binary(event)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def flagged(order_id: str, source: str = "/test/broker", event_type: str = FLAGGED) -> CloudEvent:
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": source,
            "type": event_type,
            "datacontenttype": "application/json",
            "tenant": "acme",
        },
        json.dumps({"orderId": order_id, "amount": 5000, "currency": "EUR"}).encode(),
    )


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
    # Trigger dispatchers get ports in name order: event-store 0, notifier 1.
    return metric(stack, "trigger_dispatchers", 1, name, trigger="notifier", **labels)


def settled(stack) -> bool:
    """Both Triggers' queues are empty and nothing is in flight."""
    for offset, trigger in ((0, "event-store"), (1, "notifier")):
        depth = metric(stack, "trigger_dispatchers", offset, "ripple_trigger_queue_depth", trigger=trigger)
        busy = metric(stack, "trigger_dispatchers", offset, "ripple_trigger_in_flight", trigger=trigger)
        if depth or busy:
            return False
    return True


def test_a_flagged_event_is_mailed_once_and_stored_once(stack, ingress_url, database):
    event = flagged("o-" + uuid.uuid4().hex[:8])
    status, _, _ = post(ingress_url, event)
    assert status == 202
    wait_until(lambda: mails_for(stack, event["id"]) == 1, "the mail")
    wait_until(lambda: rows(database, "events", "/test/broker", event["id"]) == 1, "the stored event")
    # A redelivery of the same event (as after a lost ack) sends nothing more.
    assert post(ingress_url, event)[0] == 202
    wait_until(lambda: settled(stack), "the Triggers to settle")
    assert mails_for(stack, event["id"]) == 1
    assert rows(database, "notifications", "/test/broker", event["id"]) == 1
    assert rows(database, "events", "/test/broker", event["id"]) == 1


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
        CloudEvent(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/test/broker-down",
                "type": "dev.ripple.shop.order.placed",
                "datacontenttype": "application/json",
                "tenant": tenant,
                "partitionkey": f"{tenant}/{order_id}",
            },
            {"orderId": order_id, "amount": 5000, "currency": "EUR"},
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
    wait_until(lambda: all(rows(database, "events", ALERT_SOURCE, i) == 1 for i in ids), "the stored alerts")
    wait_until(lambda: settled(stack), "the Triggers to settle")
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
        assert queue_depth(stack, "t.ripple.notifier") == before + 20
        stack.stop("rabbitmq")
        stack.start("rabbitmq")
        assert queue_depth(stack, "t.ripple.notifier") == before + 20
    wait_until(lambda: all(mails_for(stack, e["id"]) >= 1 for e in events), "the 20 mails")
    wait_until(lambda: settled(stack), "the Triggers to settle")
    assert [mails_for(stack, e["id"]) for e in events] == [1] * 20
    assert sum(rows(database, "events", "/test/broker", e["id"]) for e in events) == 20


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


def test_a_failing_notifier_is_retried_then_dead_lettered_with_the_error_extensions(
    stack, ingress_url, database
):
    event = flagged("o-dead")
    retried = notifier_metric(stack, "ripple_trigger_events_retried_total")
    with stack.stopped("mail-sink"):
        assert post(ingress_url, event)[0] == 202
        wait_until(lambda: dead_letter(database, event["id"]) is not None, "the dead letter")
    letter = dead_letter(database, event["id"])
    notifier_url = f"http://{stack.settings.host}:{stack.settings.ports['notifier']}"
    assert letter["error_dest"] == notifier_url
    assert letter["error_code"] == "503"
    assert letter["error_data"]  # the notifier's problem+json, as Knative passes it
    # The Trigger's delivery: 5 retries before giving up.
    assert notifier_metric(stack, "ripple_trigger_events_retried_total") - retried >= 5
    assert mails_for(stack, event["id"]) == 0
    assert rows(database, "notifications", "/test/broker", event["id"]) == 0


def test_a_notifier_back_after_a_few_failures_sends_once(stack, ingress_url, database):
    event = flagged("o-flaky")
    retried = notifier_metric(stack, "ripple_trigger_events_retried_total")
    with stack.stopped("mail-sink"):
        assert post(ingress_url, event)[0] == 202
        wait_until(lambda: notifier_metric(stack, "ripple_trigger_events_retried_total") > retried, "a retry")
    wait_until(lambda: mails_for(stack, event["id"]) == 1, "the mail")
    wait_until(lambda: settled(stack), "the Triggers to settle")
    assert mails_for(stack, event["id"]) == 1
    assert rows(database, "notifications", "/test/broker", event["id"]) == 1
    assert dead_letter(database, event["id"]) is None
