"""event-store's group commit against the real PostgreSQL: concurrent deliveries share writes,
yet each is answered for its own row; a row PostgreSQL refuses gets its own 422, not the others."""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from ripple_consumer.http import create_app
from ripple_events.samples import ORDER_PLACED, cloud_event

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]
METRICS = (
    "ripple_event_store_events_total",
    "ripple_event_store_batch_rows",
    "ripple_event_store_delay_seconds",
)


@pytest.fixture(scope="module")
def app(stack):
    with stack.function_environment(FUNCTION_DIR):
        for name in METRICS:  # main.py was loaded by another test module first
            loaded = REGISTRY._names_to_collectors.get(name)
            if loaded is not None:
                REGISTRY.unregister(loaded)
        app = create_app(str(FUNCTION_DIR / "main.py"))
        app.function_module = sys.modules["main"]
        with TestClient(app) as client:  # one event loop, as in the function's server
            app.client = client
            yield app
        # The other test modules load main.py again: free the names of its metrics for them.
        REGISTRY.unregister(app.function_module.STORED)
        REGISTRY.unregister(app.function_module.BATCH_ROWS)
        REGISTRY.unregister(app.function_module.DELAY)


def test_concurrent_deliveries_share_commits_and_a_bad_row_fails_alone(app, stack):
    source = f"/test/event-store/group-{uuid.uuid4()}"
    # PostgreSQL's jsonb refuses \u0000 (DataError) although the JSON itself is valid.
    events = [
        cloud_event(ORDER_PLACED, {"orderId": f"o-{n}", "note": "\u0000" if n == 7 else "ok"}, source)
        for n in range(40)
    ]
    writes = []
    module = app.function_module
    store_many = module.STORE._write
    module.STORE._write = lambda engine, rows: writes.append(len(rows)) or store_many(engine, rows)

    def post(ce: CloudEvent) -> int:
        headers, body = to_binary(ce)
        return app.client.post("/", headers=headers, content=body).status_code

    try:
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(post, events))
            again = list(pool.map(post, events[:10]))  # redeliveries: no-ops
    finally:
        module.STORE._write = store_many
    assert statuses == [422 if n == 7 else 200 for n in range(40)]
    assert again == [422 if n == 7 else 200 for n in range(10)]
    engine = create_engine(stack.postgres_url)
    try:
        with engine.begin() as connection:
            ids = connection.execute(text("SELECT id FROM events WHERE source = :s"), {"s": source}).scalars()
            stored = sorted(ids)
            connection.execute(text("DELETE FROM events WHERE source = :s"), {"s": source})
    finally:
        engine.dispose()
    assert stored == sorted(ce["id"] for n, ce in enumerate(events) if n != 7)
    assert sum(writes) >= 50 and len(writes) <= 50  # 50 deliveries: some of them shared a write
