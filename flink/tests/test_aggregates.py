"""The aggregation job (flink/jobs/aggregates.py) on the local stack: exact aggregates, also across failures.

Every test writes known events for a tenant of its own to the real topics and polls PostgreSQL
until the aggregates equal what those events must give, each counted once. The job is the one
`make up` runs; `ensure_running` (what `make up` does) submits it if needed.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa
from flink_testkit import (
    ORDER,
    PAGEVIEW,
    Event,
    Heartbeat,
    Stream,
    actual_per_minute,
    actual_products,
    actual_totals,
    delete_tenant,
    expected_per_minute,
    expected_products,
    expected_totals,
    make_events,
    new_tenant,
    producer,
    wait_for,
    wait_for_aggregates,
)

from ripple_stack import flink_job
from ripple_stack.component import http_status
from ripple_stack.components.flink import rest_get
from ripple_stack.supervisor import Supervisor

pytestmark = pytest.mark.integration


def _say(message: str) -> None:
    print(message)


@pytest.fixture(scope="module")
def job(stack) -> str:
    """The running job (submitted the way `make up` does if it is not running)."""
    return flink_job.ensure_running(stack.settings, stack.secrets, _say)


@pytest.fixture(scope="module")
def engine(stack):
    engine = sa.create_engine(stack.postgres_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def heartbeat(stack):
    with Heartbeat(stack.kafka_bootstrap):
        yield


@pytest.fixture
def tenant(request, engine):
    name = new_tenant(request.node.name.removeprefix("test_")[:20].replace("_", "-"))
    yield name
    delete_tenant(engine, name)


def send_all(stack, events: list[Event]) -> None:
    kafka = producer(stack.kafka_bootstrap)
    for event in events:
        event.send(kafka)
    kafka.flush()
    kafka.close()


def kill_program(stack, program: str) -> None:
    """SIGKILL a supervised program's whole process group; supervisord starts it again."""
    pid = Supervisor(stack.settings).processes()[program]["pid"]
    assert pid, f"{program} is not running"
    os.killpg(pid, signal.SIGKILL)


def wait_job_running(stack, timeout_s: float = 300) -> str:
    def running() -> bool:
        try:
            job = flink_job.running_job(stack.settings)
        except OSError:
            return False
        return job is not None and job.state == "RUNNING"

    wait_for("the job to run", running, timeout_s)
    job = flink_job.running_job(stack.settings)
    assert job is not None
    return job.job_id


def test_known_events_give_exact_aggregates(stack, job, engine, tenant):
    now = datetime.now(UTC)
    # Out of order by up to 10 s (well inside the lateness): all of them count in their minute.
    events = make_events(tenant, 80, now - timedelta(seconds=25), timedelta(seconds=10), seed=7)
    kafka = producer(stack.kafka_bootstrap)
    for event in events:
        event.send(kafka)
    # A client retrying part of its batch: the same (source, id) again must not count twice.
    for event in events[:15]:
        event.send(kafka)
    # The same event id from another source is another event.
    other_source = Event(PAGEVIEW, tenant, now - timedelta(seconds=20), {"sessionId": "s-x", "path": "/"})
    other_source.id = events[0].id
    other_source.source = "/tests/flink/other"
    other_source.send(kafka)
    # `time` with an offset other than Z names the same instant (and the same minute in UTC).
    shifted = Event(
        ORDER,
        tenant,
        now - timedelta(seconds=18),
        {
            "orderId": "o-tz",
            "customerId": "c-tz",
            "items": [{"sku": "sku-red", "quantity": 2, "unitPrice": 1.25}],
            "amount": 2.5,
            "currency": "EUR",
        },
    )
    shifted.send(kafka, time_text=shifted.time.astimezone(timezone(timedelta(hours=2))).isoformat())
    expected = [*events, other_source, shifted]
    kafka.flush()
    kafka.close()
    wait_for_aggregates(engine, tenant, expected)


def window_watermark(stack) -> datetime | None:
    """The input watermark of the job's window operator (from the REST API)."""
    job = flink_job.running_job(stack.settings)
    if job is None:
        return None
    vertices = rest_get(stack.settings, f"/jobs/{job.job_id}")["vertices"]
    window = next(v for v in vertices if "GlobalWindowAggregate" in v["name"])
    marks = rest_get(stack.settings, f"/jobs/{job.job_id}/vertices/{window['id']}/watermarks")
    values = [int(mark["value"]) for mark in marks if mark["id"].endswith("currentInputWatermark")]
    # No value yet while the metrics are first collected; Long.MIN_VALUE before any watermark.
    if not values or min(values) <= 0:
        return None
    return datetime.fromtimestamp(min(values) / 1000, UTC)


def test_late_events_count_in_running_aggregates_but_not_in_windows(stack, job, engine, tenant):
    """The rule: behind the watermark -> dropped from the per-minute table, counted in the running ones."""
    now = datetime.now(UTC)
    late_time = now - timedelta(minutes=3)
    # The precondition of "late": the watermark (moved on by the heartbeat) is past its window.
    wait_for(
        "the watermark to pass the late events' window",
        lambda: (mark := window_watermark(stack)) is not None and mark >= minute_end(late_time),
        180,
    )
    order = {
        "orderId": "o-late",
        "customerId": "c-late",
        "items": [{"sku": "sku-late", "quantity": 3, "unitPrice": 2.5}],
        "amount": 7.5,
        "currency": "EUR",
    }
    late = [
        Event(ORDER, tenant, late_time, order),
        Event(PAGEVIEW, tenant, late_time, {"sessionId": "s-late", "path": "/late"}),
    ]
    # On time (and out of order among themselves, within the lateness); sent after the late ones,
    # with the same keys too, so their windows showing up means the late ones were processed.
    on_time = make_events(tenant, 20, now - timedelta(seconds=22), timedelta(seconds=6), seed=11)
    on_time += [
        Event(ORDER, tenant, now - timedelta(seconds=20), {**order, "items": order["items"][:1]}),
        Event(PAGEVIEW, tenant, now - timedelta(seconds=25), {"sessionId": "s-late", "path": "/"}),
    ]
    send_all(stack, [*late, *on_time])

    everything = [*late, *on_time]
    wait_for(
        "running aggregates with the late events and windows without them",
        lambda: (
            actual_totals(engine, tenant) == expected_totals(everything)
            and actual_per_minute(engine, tenant) == expected_per_minute(on_time)
        ),
        strict=False,
    )
    assert actual_totals(engine, tenant) == expected_totals(everything)
    assert actual_products(engine, tenant) == expected_products(everything)
    assert actual_per_minute(engine, tenant) == expected_per_minute(on_time)


def minute_end(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_taskmanager_killed_while_events_flow(stack, job, engine, tenant):
    stream = Stream(stack.kafka_bootstrap, tenant, count=3000, per_second=150)
    stream.start()
    wait_for("a third of the events", lambda: actual_totals_count(engine, tenant) >= 500, 120, 0.5)
    kill_program(stack, "flink-taskmanager")
    events = stream.finish()
    wait_job_running(stack)
    wait_for_aggregates(engine, tenant, events)


def actual_totals_count(engine, tenant) -> int:
    totals = actual_totals(engine, tenant)
    return 0 if totals is None else totals[0] + totals[2] + totals[4]


def test_postgres_down_while_events_flow(stack, job, engine, tenant):
    stream = Stream(stack.kafka_bootstrap, tenant, count=2000, per_second=80)
    stream.start()
    wait_for("the first events", lambda: actual_totals_count(engine, tenant) >= 100, 120, 0.5)
    with stack.stopped("postgres"):
        time.sleep(20)  # the outage, while the stream keeps flowing
    events = stream.finish()
    wait_job_running(stack)
    wait_for_aggregates(engine, tenant, events)


def test_jobmanager_killed_job_resumes_from_checkpoint(stack, job, engine, tenant):
    stream = Stream(stack.kafka_bootstrap, tenant, count=2000, per_second=100)
    stream.start()
    wait_for("a third of the events", lambda: actual_totals_count(engine, tenant) >= 600, 120, 0.5)
    before = flink_job.latest_restore_point(stack.settings)
    kill_program(stack, "flink-jobmanager")

    def cluster_back() -> bool:
        try:
            return rest_get(stack.settings, "/overview").get("taskmanagers", 0) >= 1
        except OSError:
            return False

    wait_for("the JobManager to come back with a TaskManager", cluster_back, 300)
    # No HA service locally: the new JobManager does not know the job; `make up` resumes it from
    # the newest retained checkpoint (another session's `make up` may have done so already).
    assert before is not None and flink_job.latest_restore_point(stack.settings) is not None
    new_job = flink_job.ensure_running(stack.settings, stack.secrets, _say)
    assert new_job != job
    events = stream.finish()
    wait_job_running(stack)
    wait_for_aggregates(engine, tenant, events)


def test_flink_metrics_reach_prometheus(stack, job):
    def scraped() -> bool:
        query = urllib.parse.urlencode({"query": "flink_jobmanager_numRunningJobs"})
        with urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/query?{query}", timeout=10) as response:
            result = json.load(response)["data"]["result"]
        return any(float(sample["value"][1]) >= 1 for sample in result)

    wait_for("flink_jobmanager_numRunningJobs >= 1 in Prometheus", scraped, 180)


def test_events_posted_to_the_gateway_reach_the_aggregates(stack, job, engine):
    """End to end: binary-mode CloudEvents through the gateway (tenant from the token: acme).

    The tenant is shared with other tests, so the check is on products of this test's own:
    their rows are exact, and a retried event (same id) counts once.
    """
    if http_status(f"{stack.gateway_url}/readyz") != 200:
        pytest.skip("the gateway is not running (GET /readyz did not answer 200)")
    token = stack.client_token()
    sku = f"sku-e2e-{uuid.uuid4().hex[:8]}"
    orders = [
        {
            "orderId": f"o-e2e-{n}",
            "customerId": "c-e2e",
            "items": [
                {"sku": sku, "quantity": n, "unitPrice": 1.5},
                {"sku": f"{sku}-b", "quantity": 1, "unitPrice": 4},
            ],
            "amount": 1.5 * n + 4,
            "currency": "EUR",
        }
        for n in range(1, 6)
    ]
    ids = [f"e2e-{uuid.uuid4().hex}" for _ in orders]
    try:
        for event_id, data in [*zip(ids, orders, strict=True), (ids[0], orders[0])]:  # the last: a retry
            response = requests.post(
                stack.gateway_url + "/",
                data=json.dumps(data),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-id": event_id,
                    "ce-source": "/tests/flink-e2e",
                    "ce-type": ORDER,
                },
                timeout=30,
            )
            assert response.status_code == 202, response.text
        expected = {
            ("acme", sku): (Decimal("22.50"), 15, 5),
            ("acme", f"{sku}-b"): (Decimal("20.00"), 5, 5),
        }

        def rows() -> dict:
            with engine.connect() as connection:
                found = connection.execute(
                    sa.text(
                        "SELECT tenant, sku, revenue, quantity, order_lines FROM agg_product_sales "
                        "WHERE sku IN (:a, :b)"
                    ),
                    {"a": sku, "b": f"{sku}-b"},
                ).all()
            return {(t, s): (r, q, n) for t, s, r, q, n in found}

        wait_for("the gateway's events in agg_product_sales", lambda: rows() == expected, strict=False)
        assert rows() == expected
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM agg_product_sales WHERE tenant = 'acme' AND sku IN (:a, :b)"),
                {"a": sku, "b": f"{sku}-b"},
            )
