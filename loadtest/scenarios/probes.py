"""What the scenarios watch while they run, each in its own thread, about once a second.

A probe that cannot answer (its server is the one that is down) records None and tries again:
a stalled probe must not stall the timeline, so each has its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import psycopg2
import requests
from kafka import KafkaAdminClient
from kafka.admin import OffsetSpec

from .config import FLINK_GROUP, FLINK_JOB, STORE_GROUP, TENANT, TOPICS, LoadConfig
from .stats import SalesTotals, Sample

log = logging.getLogger(__name__)
Reading = dict[str, float | str | None]


class Probe(threading.Thread):
    def __init__(self, name: str, read: Callable[[], Reading], interval_s: float = 1.0) -> None:
        super().__init__(name=f"probe-{name}", daemon=True)
        self.read = read
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                values = self.read()
            except Exception as error:  # the probed server is down: that is what we watch
                log.debug("%s: %s", self.name, error)
                values = {}
            self.samples.append(Sample(time.time(), values))
            self._stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)


class KafkaLag:
    """Records not yet committed by the event-store dispatcher and by the Flink job (what that
    counts: config.LAG_MEANING)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: KafkaAdminClient | None = None

    def __call__(self) -> Reading:
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=2500, client_id="ripple-loadtest"
                )
            committed = self._admin.list_group_offsets([STORE_GROUP, FLINK_GROUP])
            partitions = {tp for offsets in committed.values() for tp in offsets if tp.topic in TOPICS}
            ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        except Exception:
            if self._admin is not None:
                self._admin.close()
            self._admin = None
            raise

        def lag(group: str) -> float | None:
            offsets = committed.get(group) or {}
            values = [
                max(0, ends[tp].offset - meta.offset)
                for tp, meta in offsets.items()
                if tp in ends and meta.offset >= 0
            ]
            return float(sum(values)) if values else None

        return {"lag_event_store": lag(STORE_GROUP), "lag_flink": lag(FLINK_GROUP)}

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


class Database:
    """This run's rows: events stored under its source, order lines Flink aggregated for its skus."""

    def __init__(self, dsn: str, source: str, run_id: str) -> None:
        self.dsn = dsn
        self.source = source
        self.sku_prefix = f"{run_id}-"
        self._connection = None

    def _cursor(self):
        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(self.dsn)
            self._connection.autocommit = True
            with self._connection.cursor() as cursor:
                # Reads are never blocked by the postgres-slow lock; a dead server is found fast.
                cursor.execute("SET statement_timeout = '5s'")
        return self._connection.cursor()

    def _run(self, query: str, args: tuple) -> list[tuple]:
        try:
            with self._cursor() as cursor:
                cursor.execute(query, args)
                return cursor.fetchall()
        except psycopg2.Error:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            raise

    def __call__(self) -> Reading:
        stored = self._run("SELECT count(*) FROM events WHERE source = %s", (self.source,))[0][0]
        lines = self._run(
            "SELECT coalesce(sum(order_lines), 0) FROM agg_product_sales "
            "WHERE tenant = %s AND starts_with(sku, %s)",
            (TENANT, self.sku_prefix),
        )[0][0]
        return {"stored_rows": float(stored), "flink_order_lines": float(lines)}

    # --- the verdict's queries ------------------------------------------------------------------

    def stored_ids(self) -> tuple[set[str], int]:
        rows = self._run("SELECT id FROM events WHERE source = %s", (self.source,))
        return {row[0] for row in rows}, len(rows)

    def dead_lettered(self) -> int:
        return self._run("SELECT count(*) FROM dead_letters WHERE source = %s", (self.source,))[0][0]

    def expected_sales(self) -> SalesTotals:
        """Sums over the orders of this run in `events`: what Flink must have counted, once each."""
        quantity, lines, revenue = self._run(
            """
            SELECT coalesce(sum((item->>'quantity')::bigint), 0), count(item),
                   coalesce(sum((item->>'quantity')::numeric * (item->>'unitPrice')::numeric), 0)
            FROM events, jsonb_array_elements(data->'items') AS item
            WHERE source = %s AND type = 'dev.ripple.shop.order.placed'
            """,
            (self.source,),
        )[0]
        return SalesTotals(int(quantity), int(lines), Decimal(revenue).quantize(Decimal("0.01")))

    def flink_sales(self) -> SalesTotals:
        quantity, lines, revenue = self._run(
            """
            SELECT coalesce(sum(quantity), 0), coalesce(sum(order_lines), 0), coalesce(sum(revenue), 0)
            FROM agg_product_sales WHERE tenant = %s AND starts_with(sku, %s)
            """,
            (TENANT, self.sku_prefix),
        )[0]
        return SalesTotals(int(quantity), int(lines), Decimal(revenue).quantize(Decimal("0.01")))

    def tenant_totals(self) -> dict[str, float] | None:
        rows = self._run(
            "SELECT orders, order_amount, payments, payment_amount, pageviews FROM agg_tenant_totals "
            "WHERE tenant = %s",
            (TENANT,),
        )
        if not rows:
            return None
        names = ("orders", "order_amount", "payments", "payment_amount", "pageviews")
        return {name: float(value) for name, value in zip(names, rows[0], strict=True)}

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


class FlinkJob:
    """State of the aggregation job (RUNNING, RESTARTING, ...), None when there is none."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url
        self._session = requests.Session()

    def state(self) -> str | None:
        response = self._session.get(f"{self.rest_url}/jobs/overview", timeout=2)
        response.raise_for_status()
        alive = [
            job
            for job in response.json().get("jobs", [])
            if job["name"] == FLINK_JOB and job["state"] not in ("FINISHED", "CANCELED", "FAILED")
        ]
        return max(alive, key=lambda job: job["start-time"])["state"] if alive else None

    def __call__(self) -> Reading:
        try:
            return {"flink_job": self.state() or "none"}
        except requests.RequestException:
            return {"flink_job": "unreachable"}


def start_probes(config: LoadConfig, source: str, run_id: str) -> tuple[list[Probe], Database, FlinkJob]:
    database = Database(config.postgres_dsn, source, run_id)
    flink = FlinkJob(config.stack.flink_rest_url)
    probes = [
        Probe("kafka", KafkaLag(config.stack.kafka_bootstrap)),
        Probe("postgres", Database(config.postgres_dsn, source, run_id)),
        Probe("flink", FlinkJob(config.stack.flink_rest_url)),
    ]
    for probe in probes:
        probe.start()
    return probes, database, flink
