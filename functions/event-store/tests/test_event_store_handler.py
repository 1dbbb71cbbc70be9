"""event-store's HTTP contract against the real PostgreSQL: stored once, 4xx only for events
that can never be stored, 503 while the database cannot be reached."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from sqlalchemy import text
from starlette.testclient import TestClient

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import create_app
from ripple_events.samples import ORDER_PLACED, cloud_event

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(stack):
    with stack.function_environment(FUNCTION_DIR):
        app = create_app(str(FUNCTION_DIR / "main.py"))
        # One event loop for the module's requests, as the function has in its server.
        with TestClient(app) as client:
            # functions-framework registers the source as module "main"; keep ours (other functions' too).
            client.function_module = sys.modules["main"]
            yield client


def event(data: object = None, **attributes: str) -> CloudEvent:
    fixed = {"subject": "o-1", "time": "2026-11-25T10:00:00Z"}
    data = {"orderId": "o-1", "amount": 12.5} if data is None else data
    return cloud_event(ORDER_PLACED, data, "/test/event-store", **(fixed | attributes))


def post(client, ce: CloudEvent, body: bytes | None = None):
    headers, payload = to_binary(ce)
    return client.post("/", headers=headers, content=payload if body is None else body)


def rows(database, ce: CloudEvent) -> list:
    with database.connect() as connection:
        return connection.execute(
            text(
                "SELECT type, subject, tenant, time, data, extensions FROM events"
                " WHERE source = :s AND id = :i"
            ),
            {"s": ce["source"], "i": ce["id"]},
        ).all()


def test_event_is_stored_once_even_when_redelivered(client, database):
    ce = event()
    assert post(client, ce).status_code == 200
    assert post(client, ce).status_code == 200  # redelivery: a no-op
    (row,) = rows(database, ce)
    assert row.type == "dev.ripple.shop.order.placed"
    assert (row.subject, row.tenant) == ("o-1", "acme")
    assert row.time.isoformat() == "2026-11-25T10:00:00+00:00"
    assert row.data == {"orderId": "o-1", "amount": 12.5}
    assert row.extensions == {"tenant": "acme"}


def test_an_event_without_data_is_stored_with_json_null(client, database):
    ce = event()
    assert post(client, ce, body=b"").status_code == 200
    (row,) = rows(database, ce)
    assert row.data is None
    with database.connect() as connection:
        kind = connection.execute(
            text("SELECT jsonb_typeof(data) FROM events WHERE source = :s AND id = :i"),
            {"s": ce["source"], "i": ce["id"]},
        ).scalar_one()
    assert kind == "null"  # JSON null, as SQLAlchemy's JSONB wrote it before


def test_data_that_is_not_json_is_refused_for_good(client, database):
    ce = event(datacontenttype="text/plain")
    response = post(client, ce, body=b"not json at all")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://ripple.dev/problems/unstorable-event"
    assert rows(database, ce) == []


def test_malformed_time_is_refused_for_good(client, database):
    ce = event(time="yesterday")
    response = post(client, ce)
    assert response.status_code == 422
    assert "time" in response.json()["detail"]


def test_unreachable_database_answers_503_so_the_dispatcher_retries(client, stack, monkeypatch):
    module = client.function_module
    config = module.CONFIG
    dead = config.database_url.set(port=1)  # nothing listens there
    monkeypatch.setattr(module, "engine", LazyEngine(type(config)(dead, 1, 2)))
    response = post(client, event())
    assert response.status_code == 503
    assert response.json()["type"] == "https://ripple.dev/problems/database-unavailable"


def test_a_request_that_is_no_cloudevent_gets_a_problem(client):
    response = client.post("/", headers={"content-type": "application/json"}, content=b"{}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://ripple.dev/problems/malformed-event"


def test_probes_and_metrics(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"ripple_event_store_events_total" in metrics.content
    assert b"ripple_event_store_delay_seconds_bucket" in metrics.content  # the dashboard's event -> row delay
