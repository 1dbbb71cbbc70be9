"""Known shop events for the aggregation job, and the aggregate rows they must produce.

Events are written to Kafka exactly as the gateway writes them (CloudEvents Kafka binding, binary
mode, via the cloudevents SDK), so the job cannot tell them apart from real traffic. Each test uses
its own tenant, so tests stay independent while sharing the one running job.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from kafka import KafkaProducer

ORDER = "dev.ripple.shop.order.placed"
PAYMENT = "dev.ripple.shop.payment.captured"
PAGEVIEW = "dev.ripple.shop.page.viewed"
TOPICS = {ORDER: "ripple.shop.orders", PAYMENT: "ripple.shop.payments", PAGEVIEW: "ripple.shop.pageviews"}
SKUS = ["sku-red", "sku-green", "sku-blue", "sku-gold"]
HEARTBEAT_TENANT = "ripple-test-heartbeat"
# The job's allowed lateness (RIPPLE_LATENESS_S default).
LATENESS = timedelta(seconds=30)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_tenant(label: str) -> str:
    return f"test-{label}-{uuid.uuid4().hex[:8]}"


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=10)


@dataclass
class Event:
    type: str
    tenant: str
    time: datetime
    data: dict
    source: str = "/tests/flink"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def key_value(self) -> str:
        return self.data["orderId"] if self.type != PAGEVIEW else self.data["sessionId"]

    def send(self, kafka: KafkaProducer, partition: int | None = None, time_text: str | None = None) -> None:
        attributes = {
            "type": self.type,
            "source": self.source,
            "id": self.id,
            "time": time_text or rfc3339(self.time),
            "tenant": self.tenant,
            "partitionkey": f"{self.tenant}/{self.key_value}",
            "datacontenttype": "application/json",
        }
        message = to_binary(CloudEvent(attributes, self.data), key_mapper=lambda e: e.get("partitionkey"))
        kafka.send(
            TOPICS[self.type],
            key=message.key.encode(),
            value=message.value,
            headers=list(message.headers.items()),
            partition=partition,
        )


def make_events(tenant: str, count: int, start: datetime, spread: timedelta, seed: int = 1) -> list[Event]:
    """`count` orders, payments and page views of one tenant with times in [start, start+spread)."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        moment = start + spread * rng.random()
        kind = rng.choice([ORDER, ORDER, PAYMENT, PAGEVIEW])
        if kind == ORDER:
            items = [
                {
                    "sku": rng.choice(SKUS),
                    "quantity": rng.randint(1, 5),
                    "unitPrice": rng.randint(1, 9999) / 100,
                }
                for _ in range(rng.randint(1, 3))
            ]
            amount = sum(Decimal(str(i["unitPrice"])) * i["quantity"] for i in items)
            data = {
                "orderId": f"o-{n}",
                "customerId": f"c-{rng.randint(1, 50)}",
                "items": items,
                "amount": float(amount),
                "currency": "EUR",
            }
        elif kind == PAYMENT:
            data = {
                "paymentId": f"p-{n}",
                "orderId": f"o-{rng.randint(0, count)}",
                "amount": rng.randint(1, 99999) / 100,
                "currency": "EUR",
                "method": rng.choice(["card", "paypal", "invoice"]),
            }
        else:
            data = {"sessionId": f"s-{rng.randint(1, 20)}", "path": f"/p/{rng.randint(1, 9)}"}
        events.append(Event(kind, tenant, moment, data))
    return events


def minute(moment: datetime) -> datetime:
    """The start of the event-time minute, as the naive UTC timestamp PostgreSQL holds."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0, tzinfo=None)


def expected_per_minute(events: list[Event]) -> dict:
    rows: dict = defaultdict(lambda: [0, None])
    for event in events:
        row = rows[(event.type, minute(event.time))]
        row[0] += 1
        if event.type != PAGEVIEW:
            row[1] = (row[1] or Decimal("0")) + Decimal(str(event.data["amount"]))
    return {key: (count, total) for key, (count, total) in rows.items()}


def expected_products(events: list[Event]) -> dict:
    rows: dict = defaultdict(lambda: [Decimal("0"), 0, 0])
    for event in events:
        if event.type == ORDER:
            for item in event.data["items"]:
                row = rows[item["sku"]]
                row[0] += Decimal(str(item["unitPrice"])) * item["quantity"]
                row[1] += item["quantity"]
                row[2] += 1
    return {sku: tuple(row) for sku, row in rows.items()}


def expected_totals(events: list[Event]) -> tuple:
    def amount(kind: str) -> Decimal:
        return sum((Decimal(str(e.data["amount"])) for e in events if e.type == kind), Decimal("0.00"))

    def count(kind: str) -> int:
        return sum(1 for e in events if e.type == kind)

    return (count(ORDER), amount(ORDER), count(PAYMENT), amount(PAYMENT), count(PAGEVIEW))


def tenant_rows(engine: sa.Engine, table: str, columns: str, tenant: str) -> list[sa.Row]:
    """The tenant's rows of one aggregate table (`columns` as in a SELECT list)."""
    with engine.connect() as connection:
        return connection.execute(
            sa.text(f"SELECT {columns} FROM {table} WHERE tenant = :tenant"), {"tenant": tenant}
        ).all()


def actual_per_minute(engine: sa.Engine, tenant: str) -> dict:
    columns = "event_type, window_start, events, amount_sum"
    rows = tenant_rows(engine, "agg_events_per_minute", columns, tenant)
    return {(kind, start): (count, total) for kind, start, count, total in rows}


def actual_products(engine: sa.Engine, tenant: str) -> dict:
    rows = tenant_rows(engine, "agg_product_sales", "sku, revenue, quantity, order_lines", tenant)
    return {sku: (revenue, quantity, lines) for sku, revenue, quantity, lines in rows}


def actual_totals(engine: sa.Engine, tenant: str) -> tuple | None:
    columns = "orders, order_amount, payments, payment_amount, pageviews"
    rows = tenant_rows(engine, "agg_tenant_totals", columns, tenant)
    return tuple(rows[0]) if rows else None


def wait_for(
    what: str, condition, timeout_s: float = 300, interval_s: float = 2, strict: bool = True
) -> None:
    """Poll until condition() is true; the deadline is generous, the test never asserts a duration.

    strict=False returns at the deadline instead of failing, for callers whose own assertions
    then show what differs.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except sa.exc.OperationalError:
            pass  # PostgreSQL restarting
        time.sleep(interval_s)
    if strict:
        raise AssertionError(f"timed out waiting for {what}")


def wait_for_aggregates(engine: sa.Engine, tenant: str, events: list[Event], timeout_s: float = 360) -> None:
    """Every aggregate of the tenant equals what `events` (each counted once) must give."""
    want_minutes, want_products = expected_per_minute(events), expected_products(events)
    want_totals = expected_totals(events)
    wait_for(
        f"the aggregates of {tenant}",
        lambda: (
            actual_totals(engine, tenant) == want_totals
            and actual_products(engine, tenant) == want_products
            and actual_per_minute(engine, tenant) == want_minutes
        ),
        timeout_s,
        strict=False,
    )
    # Stated again outside the poll, so a failure shows the difference.
    assert actual_totals(engine, tenant) == want_totals
    assert actual_products(engine, tenant) == want_products
    assert actual_per_minute(engine, tenant) == want_minutes


def delete_tenant(engine: sa.Engine, tenant: str) -> None:
    with engine.begin() as connection:
        for table in ("agg_events_per_minute", "agg_product_sales", "agg_tenant_totals"):
            connection.execute(sa.text(f"DELETE FROM {table} WHERE tenant = :tenant"), {"tenant": tenant})


class Heartbeat:
    """Page views stamped with the current time on every page-view partition, every second.

    Windows close when the watermark (event time minus the lateness) passes their end; on a quiet
    topic nothing moves it, just as in production a quiet shop delays its last window. The
    heartbeat is that traffic (the order and payment sources, quiet, turn idle after the idle
    timeout and stop holding the watermark back). Its times are never ahead of the clock, so it
    cannot make anyone else's current events late.
    """

    def __init__(self, bootstrap: str, partitions: int = 3) -> None:
        self._kafka = producer(bootstrap)
        self._partitions = partitions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._kafka.close()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            now = datetime.now(UTC)
            for partition in range(self._partitions):
                n += 1
                data = {"sessionId": f"hb-{n}", "path": "/heartbeat"}
                Event(PAGEVIEW, HEARTBEAT_TENANT, now, data).send(self._kafka, partition=partition)
            self._kafka.flush()
            self._stop.wait(1)


def stream_events(bootstrap: str, tenant: str, count: int, per_second: float, seed: int = 2) -> list[Event]:
    """Send `count` events at about `per_second`, each stamped 15-20 s before its send time.

    Stamped behind the clock but well inside the lateness, so none of them can be late however
    the partitions are interleaved or replayed: the watermark never passes (send time - lateness).
    Returns the events sent (blocking; run it in a thread to do something meanwhile).
    """
    rng = random.Random(seed)
    kafka = producer(bootstrap)
    sent: list[Event] = []
    started = time.monotonic()
    try:
        for n in range(count):
            event = make_events(tenant, 1, datetime.now(UTC), timedelta(0), seed=rng.randint(0, 10**9))[0]
            event.time = datetime.now(UTC) - timedelta(seconds=15 + 5 * rng.random())
            # make_events numbers from 0: keep business keys unique within the stream.
            for key in ("orderId", "paymentId", "sessionId"):
                if key in event.data:
                    event.data[key] = f"{event.data[key]}-{n}"
            event.send(kafka)
            sent.append(event)
            ahead = started + (n + 1) / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        kafka.flush()
    finally:
        kafka.close()
    return sent


class Stream(threading.Thread):
    """stream_events in the background; `.events` once joined."""

    def __init__(self, bootstrap: str, tenant: str, count: int, per_second: float) -> None:
        super().__init__(daemon=True)
        self._args = (bootstrap, tenant, count, per_second)
        self.events: list[Event] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.events = stream_events(*self._args)
        except BaseException as error:  # re-raised in the test by finish()
            self.error = error

    def finish(self, timeout_s: float = 300) -> list[Event]:
        self.join(timeout_s)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "the event stream did not finish"
        return self.events
