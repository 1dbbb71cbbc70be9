"""order-alerts against the real PostgreSQL and Kafka: one alert per order above the threshold,
the same alert id on redelivery, nothing below it, 422 for an order that can never be handled."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from sqlalchemy import text
from starlette.testclient import TestClient

from ripple_consumer.http import create_app
from ripple_events.samples import ORDER_PLACED, cloud_event

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def alert_topic(stack):
    name = f"ripple.test.alerts.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="ripple-test")
    admin.create_topics([NewTopic(name, 1, 1)])
    yield name
    admin.delete_topics([name])
    admin.close()


@pytest.fixture(scope="module")
def client(stack, alert_topic):
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "ALERT_TOPIC": alert_topic}
    with (
        stack.function_environment(FUNCTION_DIR, **kafka, ALERT_THRESHOLD="1000"),
        TestClient(create_app(str(FUNCTION_DIR / "main.py"))) as client,
    ):
        yield client


def order(order_id: str, amount: float, **data: object) -> CloudEvent:
    data = {"orderId": order_id, "customerId": "c-1", "amount": amount, "currency": "EUR", **data}
    return cloud_event(ORDER_PLACED, data, "/test/order-alerts", partitionkey=f"acme/{order_id}")


def post(client, event: CloudEvent):
    headers, body = to_binary(event)
    return client.post("/", headers=headers, content=body)


def alerts_on(topic: str, bootstrap: str, order_id: str) -> list:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [r for r in consumer if r.key == f"acme/{order_id}".encode()]
    finally:
        consumer.close()


def test_order_above_threshold_raises_one_alert_even_when_redelivered(client, database, stack, alert_topic):
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    event = order(order_id, 2500.0)
    assert post(client, event).status_code == 200
    assert post(client, event).status_code == 200  # redelivery
    with database.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT alert_id, amount, emitted_at FROM order_alerts"
                " WHERE tenant = 'acme' AND order_id = :o"
            ),
            {"o": order_id},
        ).all()
    assert len(rows) == 1 and rows[0].emitted_at is not None
    records = alerts_on(alert_topic, stack.kafka_bootstrap, order_id)
    assert len(records) == 1
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers["ce_type"] == "dev.ripple.shop.order.flagged"
    assert headers["ce_id"] == rows[0].alert_id
    assert headers["ce_tenant"] == "acme"
    # As a header too (the SDK moves it into the key only): the KafkaSource delivers it to event-store.
    assert headers["ce_partitionkey"] == records[0].key.decode() == f"acme/{order_id}"
    assert b'"threshold": 1000.0' in records[0].value


def test_order_below_threshold_raises_nothing(client, database, stack, alert_topic):
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    assert post(client, order(order_id, 999.0)).status_code == 200
    with database.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM order_alerts WHERE order_id = :o"), {"o": order_id}
        ).scalar_one()
    assert count == 0
    assert alerts_on(alert_topic, stack.kafka_bootstrap, order_id) == []


def test_order_without_amount_is_refused_for_good(client):
    event = order("o-x", 1.0)
    event.data.pop("amount")
    response = post(client, event)
    assert response.status_code == 422
    assert response.json()["type"] == "https://ripple.dev/problems/unprocessable-order"


def test_other_event_types_are_acknowledged_and_ignored(client):
    event = order("o-y", 5000.0)
    event["type"] = "dev.ripple.shop.page.viewed"
    assert post(client, event).status_code == 200
