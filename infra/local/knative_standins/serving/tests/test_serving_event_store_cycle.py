"""Events through the real event-store KafkaSource dispatcher across zero -> N -> zero: each stored once.

Issue 9's last test: the live stack's event-store (knative/event-store/service.yaml: min-scale 0,
target 50, max-scale 5) fed by its KafkaSource dispatcher (up to 100 records in flight). With
event-store at zero, a burst of page views written straight to Kafka wakes it (the activator holds
the first deliveries), keeps ~100 deliveries in flight so the autoscaler scales out, then stops;
the test waits for zero again and counts the rows: every event exactly once. Counts, never times
(the waits are bounded only so that a broken stack fails instead of hanging). It takes 2-5 min:
the return to zero alone is Knative's default 60 s stable window (the activator is in the path).
Skipped when other traffic keeps event-store warm before the burst (the shared stack of a dev machine).
"""

from __future__ import annotations

import time
import uuid

import pytest
from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from confluent_kafka import Producer
from sqlalchemy import create_engine, text

from ripple_stack.components.functions import knative_functions

pytestmark = pytest.mark.integration

EVENTS = 2000
TOPIC = "ripple.shop.pageviews"


def event_store():
    return next(f for f in knative_functions() if f.name == "event-store")


def wait_for(
    stack, condition, seconds: float, what: str, seen: list[dict], precondition: bool = False
) -> None:
    function = event_store()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = function.serving_status(stack.settings)
        if status:
            seen.append(status)
            if condition(status):
                return
        time.sleep(0.5)
    message = f"event-store did not get {what} within {seconds:.0f} s"
    if precondition:  # another test's traffic keeps it warm: nothing to check here
        pytest.skip(message + " (other traffic on the shared stack?)")
    pytest.fail(message)


def stored(engine, source: str) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT count(*), count(DISTINCT id) FROM events WHERE source = :s"), {"s": source}
        ).one()
    return int(row[0]), int(row[1])


def test_every_event_is_stored_once_across_zero_to_n_to_zero(stack):
    seen: list[dict] = []
    # Knative's defaults: 60 s stable window after the last request (the grace period has passed).
    wait_for(stack, lambda s: s["scaled_to_zero"], 150, "to zero before the burst", seen, precondition=True)
    del seen[:-1]  # from here on: the reading at zero right before the burst, then the cycle

    run = uuid.uuid4().hex[:12]
    source = f"/test/serving-cycle/{run}"
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
    for n in range(EVENTS):
        ce = CloudEvent(
            {
                "id": f"pv-{n}",
                "source": source,
                "type": "dev.ripple.shop.page.viewed",
                "subject": f"page-{n % 50}",
                "tenant": f"serving-cycle-{run}",
                "time": "2026-11-27T10:00:00Z",
                "datacontenttype": "application/json",
            },
            {"page": f"/p/{n % 50}", "sessionId": f"s-{n % 300}"},
        )
        message = to_binary(ce)
        producer.produce(TOPIC, value=message.value, key=message.key, headers=message.headers)
        producer.poll(0)
    assert producer.flush(30) == 0, "Kafka did not take every record"

    engine = create_engine(stack.postgres_url)
    try:
        deadline = time.monotonic() + 300  # a hang guard: delivery speed is not under test
        while stored(engine, source)[1] < EVENTS and time.monotonic() < deadline:
            status = event_store().serving_status(stack.settings)
            if status:
                seen.append(status)
            time.sleep(0.5)
        rows, distinct = stored(engine, source)
        assert (rows, distinct) == (EVENTS, EVENTS), f"stored {rows} rows for {distinct} of {EVENTS} events"
        wait_for(stack, lambda s: s["scaled_to_zero"], 300, "back to zero after the burst", seen)
        # Scale-down drained its instances: nothing was cut off and redelivered as a duplicate.
        assert stored(engine, source) == (EVENTS, EVENTS)
    finally:
        engine.dispose()

    peak = max(s["instances_ready"] for s in seen)
    assert seen[0]["scaled_to_zero"] and seen[-1]["scaled_to_zero"]
    assert peak >= 1, "the burst never started an instance"
    print(f"event-store: 0 -> {peak} -> 0 instances, {EVENTS} events stored once")
