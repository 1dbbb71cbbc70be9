"""The aggregation job (flink/jobs/aggregates.py) on the local stack: exact aggregates, also across failures.

Every test writes known events for a tenant of its own to the real topics and polls PostgreSQL
until the aggregates equal what those events must give, each counted once. The job is the one
`make up` runs; `ensure_running` (what `make up` does) submits it if needed.
"""

from __future__ import annotations

import json
import os
import re
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
    PAYMENT,
    TOPICS,
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
    rfc3339,
    wait_for,
    wait_for_aggregates,
)

from ripple_events.samples import order_data
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
        order_data("o-tz", 2.5, customer_id="c-tz", sku="sku-red"),
    )
    shifted.send(kafka, time_text=shifted.time.astimezone(timezone(timedelta(hours=2))).isoformat())
    expected = [*events, other_source, shifted]
    kafka.flush()
    kafka.close()
    wait_for_aggregates(engine, tenant, expected)


def job_has_checks(stack, job_id: str) -> bool:
    """The running job drops what its sinks cannot store (the checks of aggregates.sql are in its plan)."""
    nodes = rest_get(stack.settings, f"/jobs/{job_id}/plan")["plan"]["nodes"]
    return any("JSON_STRING(items)" in node["description"] for node in nodes)


def dropped_by_checks(stack, job_id: str) -> dict[str, int]:
    """Per source: records its check filter dropped since the job (re)started (numRecordsIn - Out).

    The JobManager serves a task's metrics only after its fetcher has collected them (every 10 s
    by default), so a job that has just (re)started may not list them yet: asked again until it
    does, for up to a minute.
    """
    deadline = time.monotonic() + 60
    while True:
        try:
            return _dropped_by_checks(stack, job_id)
        except KeyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _dropped_by_checks(stack, job_id: str) -> dict[str, int]:
    dropped = {}
    for vertex in rest_get(stack.settings, f"/jobs/{job_id}")["vertices"]:
        if not vertex["name"].startswith("Source: "):
            continue
        # "Source: orders_source[41] -> MiniBatchAssigner[42] -> Calc[43]": the source's one check.
        calc = re.search(r"Calc\[\d+\]", vertex["name"]).group(0)
        names = f"{calc}.numRecordsIn,{calc}.numRecordsOut"
        found = rest_get(
            stack.settings,
            f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics?get={urllib.parse.quote(names)}&agg=sum",
        )
        sums = {metric["id"].rsplit(".", 1)[1]: int(metric["sum"]) for metric in found}
        dropped[vertex["name"].split()[1].split("_source")[0]] = sums["numRecordsIn"] - sums["numRecordsOut"]
    return dropped


def job_restarts(stack, job_id: str) -> int:
    found = rest_get(stack.settings, f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(found[0]["value"]) if found else 0


def send_raw(kafka, topic: str, value: bytes, headers: dict[str, bytes], partition: int = 0) -> None:
    """A record as a producer bypassing the gateway may write it (nothing validated)."""
    kafka.send(topic, value=value, headers=list(headers.items()), partition=partition)


def test_unstorable_records_are_dropped_and_the_job_keeps_running(stack, job, engine, tenant):
    """Records the sinks cannot store, written straight to Kafka, must not stop the aggregates.

    Each would fail the JDBC sink (NUL in a text column, NULL in a NOT NULL column) or make the job
    fail on it forever. They are written to partition 0 of each topic, followed there by good
    events, so once the good events' aggregates are exact every bad record has been read.
    """
    job_id = flink_job.running_job(stack.settings).job_id
    if not job_has_checks(stack, job_id):
        # Never poison the shared topics for a job that would then fail on them forever.
        pytest.fail(
            f"the running job {job_id} predates the checks in aggregates.sql: run `make flink-upgrade`"
        )
    restarts, dropped_before = job_restarts(stack, job_id), dropped_by_checks(stack, job_id)
    now = datetime.now(UTC)
    item = {"sku": "sku-red", "quantity": 1, "unitPrice": 2.5}

    def headers(kind: str, **overrides: bytes | None) -> dict[str, bytes]:
        found = {
            "ce_specversion": b"1.0",
            "ce_id": uuid.uuid4().hex.encode(),
            "ce_source": b"/tests/flink/poison",
            "ce_type": kind.encode(),
            "ce_time": rfc3339(now - timedelta(seconds=20)).encode(),
            "ce_tenant": tenant.encode(),
            "content-type": b"application/json",
            **overrides,
        }
        return {name: value for name, value in found.items() if value is not None}

    def order(**fields) -> bytes:
        data = {"orderId": "o-bad", "customerId": "c", "items": [item], "amount": 2.5, "currency": "EUR"}
        return json.dumps({**data, **fields}).encode()

    def payment(amount) -> bytes:
        data = {"paymentId": "p-bad", "orderId": "o", "amount": amount, "currency": "EUR", "method": "card"}
        return json.dumps(data).encode()

    pageview = json.dumps({"sessionId": "s-bad", "path": "/"}).encode()
    orders, payments, pageviews = TOPICS[ORDER], TOPICS[PAYMENT], TOPICS[PAGEVIEW]
    # (topic, value, headers, counted by the check filter: not JSON is skipped by the format)
    poison = [
        (orders, order(items=[{**item, "sku": "sku-\x00-nul"}]), headers(ORDER), True),
        (orders, order(items=[{**item, "unitPrice": 1e30}]), headers(ORDER), True),
        (orders, order(items=[{**item, "quantity": 10**12}]), headers(ORDER), True),
        (orders, order(items=[item, None]), headers(ORDER), True),
        (orders, order(amount="not a number"), headers(ORDER), True),
        (orders, order(amount=1e30), headers(ORDER), True),
        (orders, order(), headers(ORDER, ce_type=None), True),
        (orders, order(), headers(ORDER, ce_tenant=tenant.encode() + b"\x00"), True),
        (orders, b'{"orderId": "o-bad", "items": [', headers(ORDER), False),
        (payments, payment("not a number"), headers(PAYMENT), True),
        (payments, payment(-5), headers(PAYMENT), True),
        (payments, b"\x00\xff not json", headers(PAYMENT), False),
        (pageviews, pageview, headers(PAGEVIEW, ce_type=b"dev.ripple.\x00"), True),
        (pageviews, pageview, headers(PAGEVIEW, ce_type=None), True),
        (pageviews, b"}", headers(PAGEVIEW), False),
    ]
    kafka = producer(stack.kafka_bootstrap)
    for topic, value, record_headers, _ in poison:
        send_raw(kafka, topic, value, record_headers)
    # Good events everywhere, and at least one per topic behind the bad ones on partition 0.
    good = make_events(tenant, 40, now - timedelta(seconds=25), timedelta(seconds=8), seed=13)
    for event in good:
        event.send(kafka)
    at = now - timedelta(seconds=20)
    behind = [
        Event(
            ORDER,
            tenant,
            at,
            json.loads(order(orderId="o-behind", items=[{**item, "quantity": 3}], amount=7.5)),
        ),
        Event(PAYMENT, tenant, at, json.loads(payment(7.5))),
        Event(PAGEVIEW, tenant, at, json.loads(pageview)),
    ]
    for event in behind:
        event.send(kafka, partition=0)
    kafka.flush()
    kafka.close()

    wait_for_aggregates(engine, tenant, [*good, *behind])
    running = flink_job.running_job(stack.settings)
    assert running is not None and running.state == "RUNNING"
    # The drops are counted (the metrics start again at 0 when the job restarts: compared only if
    # it did not, e.g. because another test killed the TaskManager meanwhile). The REST API serves
    # metrics from a cache refreshed every few seconds, hence the poll.
    counted = {
        name: sum(1 for where, *_, checked in poison if where == topic and checked)
        for topic, name in ((orders, "orders"), (payments, "payments"), (pageviews, "pageviews"))
    }

    def drops_seen() -> dict[str, int]:
        dropped = dropped_by_checks(stack, job_id)
        return {name: dropped[name] - dropped_before[name] for name in counted}

    wait_for(
        "the drop counters", lambda: all(drops_seen()[n] >= counted[n] for n in counted), 60, strict=False
    )
    if running.job_id == job_id and job_restarts(stack, job_id) == restarts:
        seen = drops_seen()
        assert all(seen[name] >= counted[name] for name in counted), (seen, counted)


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
    order = order_data("o-late", 7.5, quantity=3, customer_id="c-late", sku="sku-late")
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
