"""notifier against the real PostgreSQL and the stack's mail sink (a real SMTP server): one mail
per flagged event however often it arrives, 503 while SMTP is down (the outbox row stays
pending), 422 for an event that can never be e-mailed, other types acknowledged and ignored.
The send/commit window with PostgreSQL stopped: test_notifier_notify.py."""

from __future__ import annotations

import dataclasses
import email
import socket
import sys
import uuid
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from sqlalchemy import text
from starlette.testclient import TestClient

from ripple_consumer.database import MAX_OVERFLOW
from ripple_consumer.http import create_app

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(stack):
    mail_sink = f"{stack.settings.host}:{stack.settings.ports['mail_sink']}"
    with (
        stack.function_environment(
            FUNCTION_DIR, FRAUD_DESK_ADDRESS="desk@test.invalid", SMTP_SERVER=mail_sink
        ),
        TestClient(create_app(str(FUNCTION_DIR / "main.py"))) as client,
    ):
        # The source is registered as module "main"; keep ours (other functions' too).
        client.function_module = sys.modules["main"]
        yield client


def flagged(data: object = None, event_type: str = "dev.ripple.shop.order.flagged") -> CloudEvent:
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/test/notifier",
            "type": event_type,
            "datacontenttype": "application/json",
            "tenant": "acme",
        },
        {"orderId": "o-1", "amount": 5000, "currency": "EUR", "reason": "amount above 1000"}
        if data is None
        else data,
    )


def post(client, event: CloudEvent):
    headers, body = to_binary(event)
    return client.post("/", headers=headers, content=body)


def test_one_delivery_thread_per_connection_the_pool_gives(client):
    # containerConcurrency deliveries at once (knative/notifier/service.yaml), each holding a
    # pooled connection on a thread: asyncio's default executor (CPUs + 4) would queue the rest.
    module = client.function_module
    assert module.DELIVERIES._max_workers == module.CONFIG.pool_size + MAX_OVERFLOW


def mails(stack, event_id: str) -> list[email.message.Message]:
    found = []
    for path in Path(stack.settings.mail_dir).glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        if message["X-Ripple-Event-Id"] == event_id:
            found.append(message)
    return found


def recorded(database, event_id: str) -> int:
    with database.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM notifications WHERE source = '/test/notifier' AND id = :i"),
            {"i": event_id},
        ).scalar_one()


def state(database, event_id: str) -> str | None:
    with database.connect() as connection:
        return connection.execute(
            text("SELECT state FROM notifications WHERE source = '/test/notifier' AND id = :i"),
            {"i": event_id},
        ).scalar_one_or_none()


def test_a_flagged_order_is_mailed_once_however_often_it_arrives(client, stack, database):
    event = flagged()
    for _ in range(3):
        assert post(client, event).status_code == 200
    (mail,) = mails(stack, event["id"])
    assert mail["To"] == "desk@test.invalid"
    assert mail["Subject"] == "Flagged order acme/o-1: 5000 EUR"
    assert "amount above 1000" in mail.get_payload()
    assert recorded(database, event["id"]) == 1
    assert state(database, event["id"]) == "sent"


def test_smtp_down_is_a_retryable_503_and_leaves_the_row_pending(client, stack, database, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    module = client.function_module
    monkeypatch.setattr(module, "CONFIG", dataclasses.replace(module.CONFIG, smtp_port=unused))
    event = flagged()
    response = post(client, event)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://ripple.dev/problems/smtp-unavailable"
    assert state(database, event["id"]) == "pending"  # recorded before the send, never sent
    monkeypatch.undo()
    assert post(client, event).status_code == 200  # the retry, with SMTP back
    assert len(mails(stack, event["id"])) == 1
    assert state(database, event["id"]) == "sent"


def test_an_event_without_an_order_is_refused_for_good(client, stack):
    event = flagged({"amount": 5})
    response = post(client, event)
    assert response.status_code == 422
    assert response.json()["type"] == "https://ripple.dev/problems/unnotifiable-event"
    assert mails(stack, event["id"]) == []


def test_other_types_are_acknowledged_and_ignored(client, stack, database):
    event = flagged(event_type="dev.ripple.shop.order.placed")
    assert post(client, event).status_code == 200
    assert mails(stack, event["id"]) == []
    assert recorded(database, event["id"]) == 0
