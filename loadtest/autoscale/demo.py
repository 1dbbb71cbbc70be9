"""The autoscale-from-zero demo: zero -> N -> zero under a step and a spike, nothing lost.

Timeline of a run (durations and rates are options of `python -m loadtest.autoscale`):

    wait for zero ──> step (steady load) ──> spike (the edge's limit) ──> drain ──> wait for zero
    (consumers idle)   --step-rate req/s      --spike-rate req/s           every 202 stored

Load goes through nginx to the gateway as CloudEvent batches (one token, so nginx's per-client
limit applies: the spike sits just under it). Events per second, not requests, is what makes
the consumers scale: every request carries --batch events. The report shows instances per
function over time, Kafka lag, every cold start and the wait it caused, event -> row delay, and
checks that every event answered 202 was stored exactly once and that the functions went back
to zero.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import yaml

from loadtest.scenarios.config import LoadConfig
from loadtest.scenarios.driver import LoadDriver, Mix
from loadtest.scenarios.probes import Database, KafkaLag, Probe
from loadtest.scenarios.shop import Event, Shop, TokenSource, new_run_id
from loadtest.scenarios.stats import (
    Check,
    Phase,
    check_stored_once,
    phase_table,
    summarize,
    timeline,
    verdict,
)
from ripple_dashboard.links import dashboard_link, dashboard_live_link

from .analysis import (
    check_back_to_zero,
    check_cold_starts_ready,
    check_scaled,
    cold_start_summary,
    cold_start_table,
    info,
    instances_table,
    latency_summary,
    peak,
)
from .observe import InstanceReader, read_cold_starts, wait_for_zero
from .report import plot_demo

log = logging.getLogger("loadtest.autoscale")
KNATIVE_DIR = Path(__file__).resolve().parents[2] / "knative"
CONSUMERS = ("event-store", "order-alerts")  # fed by KafkaSources: they follow the backlog


@dataclass
class DemoOptions:
    step_rate: float = 4.0  # requests/s of the step
    spike_rate: float = 18.0  # requests/s of the spike: just under nginx's per-client 20 r/s (strict)
    batch: int = 50  # events per request
    step_s: float = 60.0
    spike_s: float = 30.0
    zero_timeout_s: float = 300.0  # Knative's defaults: 60 s stable window + 30 s grace, plus retention
    drain_timeout_s: float = 240.0
    workers: int = 24


class BatchShop(Shop):
    """The shop's checkout batches, `size` events a request (views, orders, payments)."""

    def __init__(self, run_id: str, size: int) -> None:
        super().__init__(run_id)
        self.size = max(1, size)

    def checkout(self) -> list[Event]:
        events: list[Event] = []
        while len(events) < self.size:
            events.extend(super().checkout())
        return events[: self.size]


def max_scale_of(function: str) -> int | None:
    manifest = KNATIVE_DIR / function / "service.yaml"
    if not manifest.exists():
        return None
    annotations = yaml.safe_load(manifest.read_text())["spec"]["template"]["metadata"].get("annotations", {})
    value = annotations.get("autoscaling.knative.dev/max-scale")
    return int(value) if value not in (None, "0") else None


def delivery_delays(dsn: str, source: str) -> list[tuple[float, float]]:
    """(received_at, received_at - event time) in seconds for this run's stored events."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM received_at), extract(epoch FROM received_at - time) "
            "FROM events WHERE source = %s AND time IS NOT NULL",
            (source,),
        )
        return [(float(at), float(delay)) for at, delay in cursor.fetchall()]


def run_demo(
    config: LoadConfig,
    options: DemoOptions,
    instances: InstanceReader,
    cold_start_log: Path | None,
    postgres_dsn: str | None,
    kafka_bootstrap: str | None,
    mode: str,
) -> tuple[Path, str]:
    run_id = new_run_id("as")
    shop = BatchShop(run_id, options.batch)
    directory = config.reports_dir / f"autoscale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [f"mode: {mode}; target {config.target_url}; run id {run_id}"]

    if mode == "local":
        log.info("watch it live: %s", dashboard_live_link(config.stack, time.time() - 60))
    log.info("waiting until %s are at zero (up to %.0f s)…", ", ".join(CONSUMERS), options.zero_timeout_s)
    instances.start()
    at_zero, waited = wait_for_zero(instances, CONSUMERS, options.zero_timeout_s, say=log.info)
    notes.append(
        f"before the load: consumers at zero after {waited:.0f} s"
        if at_zero
        else f"consumers were NOT at zero after {waited:.0f} s (someone else's traffic?); the run went on"
    )

    probes: list[Probe] = []
    if kafka_bootstrap:
        probes.append(Probe("kafka", KafkaLag(kafka_bootstrap)))
    database = Database(postgres_dsn, shop.source, run_id) if postgres_dsn else None
    if database is not None:
        probes.append(Probe("postgres", Database(postgres_dsn, shop.source, run_id)))
    for probe in probes:
        probe.start()

    tokens = TokenSource(config.token_url, config.client_id, config.client_secret)
    driver = LoadDriver(
        config.target_url, tokens, shop, rate=options.step_rate, workers=options.workers,
        mix=Mix(pageview=0, order=0, payment=0, batch=1),
    )  # fmt: skip
    t0 = time.time()
    log.info("step: %.1f req/s x %d events for %.0f s", options.step_rate, options.batch, options.step_s)
    driver.start()
    time.sleep(options.step_s)
    t_spike = time.time()
    log.info("spike: %.1f req/s x %d events for %.0f s", options.spike_rate, options.batch, options.spike_s)
    driver.set_rate(options.spike_rate)
    time.sleep(options.spike_s)
    driver.set_rate(0)
    driver.stop()
    t_load_end = time.time()

    drained = database is None
    if database is not None:
        log.info(
            "load stopped; waiting until every accepted event is stored (up to %.0f s)…",
            options.drain_timeout_s,
        )
        deadline = time.monotonic() + options.drain_timeout_s
        while time.monotonic() < deadline:
            stored, _ = database.stored_ids()
            if driver.accepted <= stored:
                drained = True
                break
            time.sleep(2)
    t_drained = time.time()
    log.info(
        "waiting until %s are back at zero (up to %.0f s)…", ", ".join(CONSUMERS), options.zero_timeout_s
    )
    back, waited_after = wait_for_zero(instances, CONSUMERS, options.zero_timeout_s, say=log.info)
    t_end = time.time() + 6  # one more scrape of the zero
    time.sleep(6)
    for probe in probes:
        probe.stop()
    instances.stop()

    ready, desired = instances.series(t0 - 10, t_end)
    phases = [
        Phase("step", t0, t_spike),
        Phase("spike", t_spike, t_load_end),
        Phase("drain", t_load_end, t_drained),
        Phase("to zero", t_drained, t_end),
    ]
    samples = [sample for probe in probes for sample in probe.samples]
    outcomes = driver.snapshot()
    starts = read_cold_starts(cold_start_log, t0 - 5, t_end) if cold_start_log else []
    delays = delivery_delays(postgres_dsn, shop.source) if postgres_dsn else []
    p50, p99 = latency_summary([delay for _, delay in delays])

    checks: list[Check] = []
    if database is not None:
        stored, rows = database.stored_ids()
        checks += check_stored_once(driver.accepted, driver.sent, stored, rows)
        database.close()
    else:
        checks.append(info("every 202 event stored", "not checked: no --postgres-dsn"))
    busy = Phase("load", t0, t_load_end)
    checks += check_scaled(ready, busy, ("gateway", *CONSUMERS))
    for function, series in sorted(ready.items()):
        limit = max_scale_of(function)
        top = peak(series, Phase("all", t0 - 10, t_end))
        if limit is not None and top is not None:
            checks.append(
                Check(
                    f"{function} never beyond max-scale",
                    "PASS" if top <= limit else "FAIL",
                    f"peak {int(top)}, max-scale {limit}",
                )
            )
    checks += check_back_to_zero(ready, t_drained, CONSUMERS)
    if starts:
        checks.append(check_cold_starts_ready(starts))
    elif mode == "cluster":
        notes.append("cold starts: Knative logs none as events; see the activator's request latencies")
    if not drained:
        notes.append("the drain timed out: some accepted events were not stored yet (see the checks)")
    if not back:
        notes.append(f"not every consumer was back at zero {waited_after:.0f} s after the drain")

    rows = timeline(outcomes, samples, t0, t_end)
    summaries = [summarize(phase, outcomes, samples) for phase in phases]
    plot_demo(
        directory / "autoscale.png", rows, ready, desired, delays, t0, phases, f"autoscale demo {run_id}"
    )
    result = verdict(checks)
    dashboard = dashboard_link(config.stack, t0 - 60, t_end) if mode == "local" else ""
    if dashboard:
        log.info("the run on the dashboard: %s", dashboard)
    offered = [
        f"{phase.name}: {summary.accepted_events / phase.duration:.0f} events/s accepted"
        for phase, summary in zip(phases[:2], summaries[:2], strict=True)
        if phase.duration
    ]
    markdown = "\n".join(
        [
            f"# Autoscale demo {run_id}",
            "",
            f"Step {options.step_rate:g} req/s then spike {options.spike_rate:g} req/s, "
            f"{options.batch} events a request, through {config.target_url}: {'; '.join(offered)}.",
            "",
            f"**Verdict: {result}**",
            "",
            *([f"The run on the local dashboard: [{dashboard}]({dashboard})", ""] if dashboard else []),
            "## Phases",
            "",
            phase_table(summaries),
            "",
            "## Instances (ready) per function",
            "",
            instances_table(ready, phases[:3]),
            "",
            '"settled": seconds from the phase\'s start to the last change of the ready count in it.',
            "",
            "## Cold starts",
            "",
            cold_start_summary(starts),
            "",
            cold_start_table(starts, t0),
            "",
            "## Event -> stored row",
            "",
            f"{len(delays)} events stored; delay from the event's time to its row "
            f"p50 {p50} ms, p99 {p99} ms.",
            "",
            "## Checks",
            "",
            *(check.line() for check in checks),
            "",
            "## Notes",
            "",
            *(f"- {note}" for note in notes),
            "",
            "## Timeline",
            "",
            "![autoscale](autoscale.png)",
            "",
            "Top: accepted events per second (and 429s); second: ready instances per function (dashed: "
            "desired); third: event-store consumer lag and this run's stored rows; bottom: event -> row "
            "delay of the events stored in each second.",
            "",
        ]
    )
    (directory / "report.md").write_text(markdown)
    return directory, result
