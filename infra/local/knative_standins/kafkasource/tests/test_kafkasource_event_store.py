"""Kafka -> dispatcher -> event-store -> PostgreSQL, end to end with the real processes:
exactly once in the store, a dispatcher killed mid-stream, PostgreSQL down for a while, and an
event posted through the gateway."""

from __future__ import annotations

import time
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest
import requests
from kafkasource_helpers import (
    DispatcherProcess,
    order_event,
    produce,
    temporary_topic,
    wait_until,
    write_manifest,
)
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ripple_events.samples import order_data
from ripple_stack.components.functions import knative_functions

pytestmark = pytest.mark.integration


def function_url(stack, name: str) -> str:
    return next(f.url(stack.settings) for f in knative_functions() if f.name == name) + "/"


def stored(database, source: str) -> tuple[int, int]:
    """(rows, distinct ids) of one test's source; (-1, -1) while PostgreSQL is down."""
    try:
        with database.connect() as connection:
            row = connection.execute(
                text("SELECT count(*), count(DISTINCT id) FROM events WHERE source = :s"), {"s": source}
            ).one()
    except OperationalError:
        return (-1, -1)
    return row[0], row[1]


def test_dispatcher_killed_mid_stream_loses_nothing_and_stores_no_duplicates(stack, database, tmp_path):
    total = 3000
    source = f"/test/restart/{uuid.uuid4()}"
    with temporary_topic(stack.kafka_bootstrap) as topic:
        produce(
            stack.kafka_bootstrap, topic, [order_event(source, f"e-{n}", f"o-{n % 50}") for n in range(total)]
        )
        manifest = event_store_manifest(stack, tmp_path, topic, initial_offset="earliest")
        log = tmp_path / "dispatcher.log"
        first = DispatcherProcess(manifest, log, env={"RIPPLE_DISPATCHER_MAX_IN_FLIGHT": "16"}).start()
        try:
            wait_until(lambda: stored(database, source)[0] >= 300, "a first part of the events stored")
        finally:
            first.kill()  # SIGKILL: no goodbye, in-flight deliveries and uncommitted offsets are cut
        assert stored(database, source)[0] < total, "the dispatcher was too fast to be killed mid-stream"
        second = DispatcherProcess(manifest, log).start()
        try:
            wait_until(lambda: stored(database, source) == (total, total), f"all {total} events stored", 240)
        finally:
            second.stop()
    assert stored(database, source) == (total, total)


def gateway_ready(stack) -> bool:
    try:
        with urllib.request.urlopen(f"{stack.gateway_url}/readyz", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def post_order(stack, token: str, event_id: str, order_id: str) -> requests.Response:
    return requests.post(
        stack.gateway_url + "/",
        headers={
            "Authorization": f"Bearer {token}",
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": "/test/gateway",
            "ce-type": "dev.ripple.shop.order.placed",
            "Content-Type": "application/json",
        },
        json=order_data(order_id, 20.0),
        timeout=30,
    )


def gateway_rows(database, event_id: str) -> int:
    try:
        with database.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM events WHERE source = '/test/gateway' AND id = :id"),
                {"id": event_id},
            ).scalar_one()
    except OperationalError:
        return -1


def test_event_posted_through_the_gateway_is_stored_exactly_once(stack, database, tmp_path):
    if not gateway_ready(stack):
        pytest.skip("the gateway (GET /readyz on the gateway port) is not ready")
    # A dispatcher of its own from the end of the orders topic, so a backlog other tests left for
    # the stack's kafkasource-event-store does not decide how long this waits.
    dispatcher = event_store_dispatcher(stack, tmp_path, "ripple.shop.orders")
    try:
        dispatcher.wait_until_positioned(3)
        check_gateway_event_stored_once(stack, database)
    finally:
        dispatcher.stop()


def event_store_manifest(stack, tmp_path, topic: str, **extra) -> Path:
    """A KafkaSource of its own to event-store (unordered; from the topic's end unless told),
    dead letters to dead-letters, patient enough to outlast an outage: 0.4 + 0.8 + ... + 12.8 s."""
    options = {"initial_offset": "latest", **extra}
    return write_manifest(
        tmp_path,
        topic,
        function_url(stack, "event-store"),
        dead_letter_uri=function_url(stack, "dead-letters"),
        ordering="unordered",
        retry=10,
        backoff_policy="exponential",
        backoff_delay="PT0.2S",
        **options,
    )


def event_store_dispatcher(stack, tmp_path, topic: str, **extra) -> DispatcherProcess:
    """A started dispatcher on event_store_manifest."""
    manifest = event_store_manifest(stack, tmp_path, topic, **extra)
    return DispatcherProcess(manifest, tmp_path / "dispatcher.log").start()


def check_gateway_event_stored_once(stack, database) -> None:
    token = stack.client_token()
    event_id = f"gw-{uuid.uuid4()}"
    first = post_order(stack, token, event_id, "o-gw-1")
    assert first.status_code == 202, first.text
    # The client retries (e.g. it lost the answer): the same event again.
    assert post_order(stack, token, event_id, "o-gw-1").status_code == 202
    wait_until(lambda: gateway_rows(database, event_id) == 1, "the gateway's event in PostgreSQL")
    with database.connect() as connection:
        row = connection.execute(
            text(
                "SELECT tenant, type, data->>'orderId' FROM events"
                " WHERE source = '/test/gateway' AND id = :id"
            ),
            {"id": event_id},
        ).one()
    assert tuple(row) == ("acme", "dev.ripple.shop.order.placed", "o-gw-1")


def test_postgres_down_backlog_waits_in_kafka_then_drains_exactly_once(stack, database, tmp_path):
    source = f"/test/outage/{uuid.uuid4()}"
    token = stack.client_token() if gateway_ready(stack) else ""
    # The gateway part needs a gateway that works before the outage (its own Kafka trouble is
    # its own tests' business); during the outage it must keep answering 202.
    before = post_order(stack, token, f"pre-{uuid.uuid4()}", "o-pre") if token else None
    gateway_up = before is not None and before.status_code == 202
    if not gateway_up:
        answer = f"{before.status_code} {before.text[:200]}" if before is not None else "not ready"
        warnings.warn(
            f"the gateway refused an event before the outage ({answer}): its part was skipped", stacklevel=1
        )
    gateway_ids: list[str] = []
    with temporary_topic(stack.kafka_bootstrap) as topic:
        # The gateway writes orders to the shared topic: read it too, from its end.
        dispatcher = event_store_dispatcher(stack, tmp_path, topic, extra_topics=("ripple.shop.orders",))
        try:
            dispatcher.wait_until_positioned(6)
            produce(
                stack.kafka_bootstrap,
                topic,
                [order_event(source, f"before-{n}", f"o-{n}") for n in range(50)],
            )
            wait_until(lambda: stored(database, source) == (50, 50), "the events before the outage")
            with stack.stopped("postgres"):
                assert stored(database, source) == (-1, -1), "PostgreSQL should be down now"
                produce(
                    stack.kafka_bootstrap,
                    topic,
                    [order_event(source, f"during-{n}", f"o-{n}") for n in range(200)],
                )
                if gateway_up:
                    for n in range(5):
                        event_id = f"outage-{uuid.uuid4()}"
                        response = post_order(stack, token, event_id, f"o-outage-{n}")
                        assert response.status_code == 202, response.text
                        gateway_ids.append(event_id)
                time.sleep(15)  # the outage: the backlog waits in Kafka while deliveries are retried
            wait_until(
                lambda: stored(database, source) == (250, 250), "the backlog drained after the outage", 180
            )
            metrics = dispatcher.metrics()
        finally:
            dispatcher.stop()
    assert "ripple_dispatcher_events_retried_total" in metrics
    assert "ripple_dispatcher_events_dead_lettered_total{" not in metrics
    for event_id in gateway_ids:
        wait_until(
            lambda event_id=event_id: gateway_rows(database, event_id) == 1, "the gateway's events stored"
        )
