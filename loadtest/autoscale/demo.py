"""The autoscale-from-zero demo: zero -> N -> zero under a step and a spike, nothing lost.

Timeline of a run (durations and rates are options of `python -m loadtest.autoscale`):

    wait for zero ──> step (steady load) ──> spike (the edge's limit) ──> drain ──> wait for zero
    (consumers idle)   --step-rate req/s      --spike-rate req/s           every 202 stored

Load goes through nginx to the gateway as CloudEvent batches (one token, so nginx's per-client
limit applies: the spike sits just under it). Events per second, not requests, is what makes
the consumers scale: every request carries --batch events. The report shows instances per
function over time, Kafka lag, every cold start and the wait it caused, each function's memory
per instance (RSS, read every few seconds), event -> row delay, and checks that every event
answered 202 was stored exactly once and that the functions went back to zero. Cold starts and
memory stand beside issue 22's goals (first request < 500 ms, idle RSS < 80 MiB per instance).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psycopg2
import yaml

from loadtest import isolation
from loadtest.scenarios import cpu
from loadtest.scenarios.config import LAG_MEANING, LoadConfig
from loadtest.scenarios.driver import LoadDriver, Mix
from loadtest.scenarios.probes import Database, KafkaLag, Probe
from loadtest.scenarios.runner import Step, walk
from loadtest.scenarios.shop import Event, Shop, TokenSource, new_run_id
from loadtest.scenarios.stats import (
    Check,
    Outcome,
    Phase,
    PhaseSummary,
    check_stored_once,
    phase_table,
    summarize,
    timeline,
    verdict,
)
from ripple_dashboard.links import dashboard_link, dashboard_live_link

from .analysis import (
    COLD_START_GOAL_S,
    MEMORY_GOAL_MIB,
    ColdStart,
    MemoryFigures,
    Series,
    check_back_to_zero,
    check_cold_starts_ready,
    check_scaled,
    check_step_admitted,
    cold_start_summary,
    cold_start_table,
    delay_by_minute,
    histogram_quantile,
    info,
    instances_table,
    latency_summary,
    memory_figures,
    memory_table,
    peak,
)
from .observe import InstanceReader, MemorySampler, read_cold_starts, wait_for_zero
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
    zero_timeout_s: float = 300.0  # Knative's defaults: ~60 s stable window (fast path), plus margin
    drain_timeout_s: float = 240.0
    workers: int = 24
    memory_every_s: float = 3.0  # how often every instance's RSS is read


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


@dataclass
class Demo:
    """One demo run's moving parts: the load, the probes, the instance reader and the phase clock.

    Like the scenarios' Drill: `steps()` is the run as a table, `run_demo` walks it, and what
    follows (checks, notes, report) reads the phases it left.
    """

    config: LoadConfig
    options: DemoOptions
    instances: InstanceReader
    mode: str
    run_id: str
    shop: BatchShop
    driver: LoadDriver
    probes: list[Probe]
    database: Database | None
    memory: MemorySampler
    cpu: cpu.Meter | None = None  # local runs: the stack's programs' CPU from the step to the drain's end
    notes: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    mark: float = 0.0
    drained: bool = False
    back_at_zero: bool = False
    waited_after: float = 0.0

    def phase(self, name: str | None) -> None:
        """Close the phase that began at the last mark; None: the phase goes on."""
        if name is None:
            return
        now = time.time()
        self.phases.append(Phase(name, self.mark, now))
        self.mark = now

    def start_step(self) -> None:
        options = self.options
        log.info("step: %.1f req/s x %d events for %.0f s", options.step_rate, options.batch, options.step_s)
        self.mark = time.time()
        if self.cpu is not None:
            self.cpu.start()
        self.driver.start()

    def start_spike(self) -> None:
        options = self.options
        log.info(
            "spike: %.1f req/s x %d events for %.0f s", options.spike_rate, options.batch, options.spike_s
        )
        self.driver.set_rate(options.spike_rate)

    def stop_load(self) -> None:
        self.driver.set_rate(0)
        self.driver.stop()

    def drain(self) -> None:
        """Wait until every accepted event is stored (nothing to wait for without a database)."""
        try:
            self._wait_until_stored()
        finally:
            if self.cpu is not None:
                self.cpu.stop(len(self.driver.accepted))

    def _wait_until_stored(self) -> None:
        self.drained = self.database is None
        if self.database is None:
            return
        timeout_s = self.options.drain_timeout_s
        log.info("load stopped; waiting until every accepted event is stored (up to %.0f s)…", timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stored, _ = self.database.stored_ids()
            if self.driver.accepted <= stored:
                self.drained = True
                return
            time.sleep(2)

    def wait_back_at_zero(self) -> None:
        timeout_s = self.options.zero_timeout_s
        log.info("waiting until %s are back at zero (up to %.0f s)…", ", ".join(CONSUMERS), timeout_s)
        self.back_at_zero, self.waited_after = wait_for_zero(
            self.instances, CONSUMERS, timeout_s, say=log.info
        )

    def steps(self) -> list[Step]:
        """The run as a table: (what to do, how long to wait afterwards, the phase it closes)."""
        options = self.options
        return [
            (self.start_step, options.step_s, "step"),
            (self.start_spike, options.spike_s, None),
            (self.stop_load, 0.0, "spike"),
            (self.drain, 0.0, "drain"),
            (self.wait_back_at_zero, 6.0, "to zero"),  # 6 s: one more scrape of the zero
        ]

    @property
    def t0(self) -> float:
        return self.phases[0].start

    @property
    def t_end(self) -> float:
        return self.phases[-1].end

    def stop(self) -> None:
        self.driver.stop()
        for probe in self.probes:
            probe.stop()
        self.memory.stop()
        self.instances.stop()


def run_demo(
    config: LoadConfig,
    options: DemoOptions,
    instances: InstanceReader,
    cold_start_log: Path | None,
    postgres_dsn: str | None,
    kafka_bootstrap: str | None,
    mode: str,
    tokens: TokenSource | None = None,
) -> tuple[Path, str]:
    demo = _start(config, options, instances, postgres_dsn, kafka_bootstrap, mode, tokens)
    try:
        walk(demo.steps(), demo.phase)
        activator = instances.activator_buckets(demo.t0, demo.t_end)  # before the readers stop
    finally:
        demo.stop()
    ready, desired = instances.series(demo.t0 - 10, demo.t_end)
    if cold_start_log:
        starts = read_cold_starts(cold_start_log, demo.t0 - 5, demo.t_end)
    else:
        starts = instances.cold_starts(demo.t0 - 5, demo.t_end)
    delays = delivery_delays(postgres_dsn, demo.shop.source) if postgres_dsn else []
    # Idle: after the drain, when every accepted event is stored and nothing is left to do.
    memory = memory_figures(demo.memory.samples, idle_from=demo.phases[2].end)
    checks = _checks(demo, ready, starts)
    directory, result = _report(demo, checks, ready, desired, starts, delays, memory)
    panic = instances.panic(demo.t0 - 10, demo.t_end)
    _write_run(directory / "run.json", demo, checks, ready, desired, panic, starts, activator, memory, result)
    return directory, result


def _relative(series: dict[str, Series], t0: float) -> dict[str, list[tuple[float, float]]]:
    return {name: [(round(t - t0, 2), value) for t, value in points] for name, points in series.items()}


def first_request(outcomes: list[Outcome]) -> dict[str, float | int] | None:
    """The run's first request: it meets the gateway at zero, so its latency is that cold start's wait."""
    if not outcomes:
        return None
    first = min(outcomes, key=lambda outcome: outcome.start)
    return {"latency_s": round(first.latency_s, 3), "status": first.status}


def _write_run(
    path: Path,
    demo: Demo,
    checks: list[Check],
    ready: dict[str, Series],
    desired: dict[str, Series],
    panic: dict[str, Series],
    starts: list[ColdStart],
    activator: dict[str, dict[float, float]],
    memory: dict[str, MemoryFigures],
    result: str,
) -> None:
    """Everything the fidelity report compares, times in seconds from the step's start."""
    t0 = demo.t0
    document = {
        "mode": demo.mode,
        "run_id": demo.run_id,
        "t0": t0,
        "load_average": list(os.getloadavg()),
        "options": demo.options.__dict__,
        "phases": [{"name": p.name, "start": p.start - t0, "end": p.end - t0} for p in demo.phases],
        "ready": _relative(ready, t0),
        "desired": _relative(desired, t0),
        "panic": _relative(panic, t0),
        "cold_starts": [
            {
                "function": start.function,
                "at": round(start.started_at - t0, 1),
                "ready_s": start.ready_s,
                "first_request_wait_s": start.first_request_wait_s,
                "reason": start.reason,
                "pod_ready_s": start.pod_ready_s,
            }
            for start in starts
        ],
        "memory": {function: asdict(figures) for function, figures in memory.items()},
        "memory_samples": [
            [round(m.t - t0, 1), m.function, m.instance, round(m.rss_mib, 1)] for m in demo.memory.samples
        ],
        "activator_ms": {
            service: {
                "count": max(buckets.values(), default=0),
                "p50": histogram_quantile(0.5, buckets),
                "p99": histogram_quantile(0.99, buckets),
            }
            for service, buckets in activator.items()
        },
        "first_request": first_request(demo.driver.snapshot()),
        "accepted": len(demo.driver.accepted),
        "sent": len(demo.driver.sent),
        "verdict": result,
        "checks": [{"name": c.name, "result": c.result, "detail": c.detail} for c in checks],
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")


def _start(
    config: LoadConfig,
    options: DemoOptions,
    instances: InstanceReader,
    postgres_dsn: str | None,
    kafka_bootstrap: str | None,
    mode: str,
    tokens: TokenSource | None = None,
) -> Demo:
    """Wait for the consumers at zero, then start the probes; the load is built but not started."""
    run_id = new_run_id("as")
    shop = BatchShop(run_id, options.batch)
    notes = [f"mode: {mode}; target {config.target_url}; run id {run_id}"]
    if mode == "local":
        log.info("watch it live: %s", dashboard_live_link(config.stack, time.time() - 60))
    log.info("waiting until %s are at zero (up to %.0f s)…", ", ".join(CONSUMERS), options.zero_timeout_s)
    instances.start()
    memory = MemorySampler(instances.instance_memory, options.memory_every_s)
    memory.start()
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
    tokens = tokens or TokenSource(config.token_url, config.client_id, config.client_secret)
    driver = LoadDriver(
        config.target_url, tokens, shop, rate=options.step_rate, workers=options.workers,
        mix=Mix(pageview=0, order=0, payment=0, batch=1),
    )  # fmt: skip
    meter = cpu.Meter(partial(cpu.program_pids, config.stack)) if mode == "local" else None
    return Demo(
        config, options, instances, mode, run_id, shop, driver, probes, database, memory, meter, notes
    )


def _lag_back_to_zero(bootstrap: str, within_s: float = 60.0) -> Check:
    """The stack's consumer groups (loadtest/isolation.STACK_GROUPS) at lag 0 within `within_s`."""
    readings: list[str] = []
    took = isolation.wait_for_zero_lag(bootstrap, within_s, out=readings.append)
    name = "stack consumer lag back to 0"
    if took is None:
        last = readings[-1].strip() if readings else "no reading"
        return Check(name, "FAIL", f"not within {within_s:.0f} s ({last}; Flink's trails by a checkpoint)")
    return Check(name, "PASS", f"after {took:.0f} s: {readings[-1].strip()}")


def _checks(demo: Demo, ready: dict[str, Series], starts: list[ColdStart]) -> list[Check]:
    """Every check of the run; adds the notes that explain a failed or skipped one."""
    t0, t_end = demo.t0, demo.t_end
    load_end = demo.phases[1].end
    t_drained = demo.phases[2].end
    checks: list[Check] = []
    if demo.database is not None:
        stored, rows = demo.database.stored_ids()
        checks += check_stored_once(demo.driver.accepted, demo.driver.sent, stored, rows)
        demo.database.close()
    else:
        checks.append(info("every 202 event stored", "not checked: no --postgres-dsn"))
    checks += check_scaled(ready, Phase("load", t0, load_end), ("gateway", *CONSUMERS))
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
    # The demo measures the real path, so it writes the stack's own topics: it must leave them drained.
    bootstrap = next((p.read.bootstrap for p in demo.probes if isinstance(p.read, KafkaLag)), None)
    if bootstrap:
        checks.append(_lag_back_to_zero(bootstrap))
    if starts:
        checks.append(check_cold_starts_ready(starts))
    elif demo.mode == "cluster":
        demo.notes.append("cold starts: Knative logs none as events; see the activator's request latencies")
    if not demo.drained:
        demo.notes.append("the drain timed out: some accepted events were not stored yet (see the checks)")
    if not demo.back_at_zero:
        demo.notes.append(f"not every consumer was back at zero {demo.waited_after:.0f} s after the drain")
    return checks


def _report(
    demo: Demo,
    checks: list[Check],
    ready: dict[str, Series],
    desired: dict[str, Series],
    starts: list[ColdStart],
    delays: list[tuple[float, float]],
    memory: dict[str, MemoryFigures],
) -> tuple[Path, str]:
    """report.md and autoscale.png in a new directory under the reports folder; the verdict."""
    config, run_id, phases, t0 = demo.config, demo.run_id, demo.phases, demo.t0
    directory = config.reports_dir / f"autoscale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    samples = [sample for probe in demo.probes for sample in probe.samples]
    outcomes = demo.driver.snapshot()
    rows = timeline(outcomes, samples, t0, demo.t_end)
    summaries = [summarize(phase, outcomes, samples) for phase in phases]
    checks.append(check_step_admitted(summaries[0]))
    plot_demo(
        directory / "autoscale.png", rows, ready, desired, delays, t0, phases, f"autoscale demo {run_id}"
    )
    result = verdict(checks)
    dashboard = dashboard_link(config.stack, t0 - 60, demo.t_end) if demo.mode == "local" else ""
    if dashboard:
        log.info("the run on the dashboard: %s", dashboard)
    markdown = _markdown(demo, checks, summaries, ready, starts, delays, memory, result, dashboard)
    (directory / "report.md").write_text(markdown)
    return directory, result


def _markdown(
    demo: Demo,
    checks: list[Check],
    summaries: list[PhaseSummary],
    ready: dict[str, Series],
    starts: list[ColdStart],
    delays: list[tuple[float, float]],
    memory: dict[str, MemoryFigures],
    result: str,
    dashboard: str,
) -> str:
    config, options, run_id, phases = demo.config, demo.options, demo.run_id, demo.phases
    offered = [
        f"{phase.name}: {summary.accepted_events / phase.duration:.0f} events/s accepted"
        for phase, summary in zip(phases[:2], summaries[:2], strict=True)
        if phase.duration
    ]
    p50, p99 = latency_summary([delay for _, delay in delays])
    return "\n".join(
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
            f"Goal (issue 22): a function's first request at zero waits < {COLD_START_GOAL_S * 1000:.0f} ms "
            "(judged on the wait p50; on the exec -> ready p50 where no request waited). exec -> ready: "
            "the function's process started until its readiness probe answered"
            + (
                "; on the cluster from kubelet's timestamps (whole seconds: ±1 s), and no request's wait "
                "is known (Knative logs none; the activator's latencies include it)."
                if demo.mode != "local"
                else "; the wait: how long the request that caused the start was held by the activator."
            ),
            "",
            cold_start_summary(starts),
            "",
            cold_start_table(starts, demo.t0),
            "",
            "## Memory per instance",
            "",
            f"Goal (issue 22): < {MEMORY_GOAL_MIB:.0f} MiB idle RSS per instance. RSS is VmRSS summed over "
            "the instance's processes (the function's only: "
            + (
                "the instance's process tree, pid from its activator's /status"
                if demo.mode == "local"
                else "its container's processes, from the container's memory cgroup on the host; not "
                "queue-proxy"
            )
            + f"), read every {options.memory_every_s:g} s while the instance was ready. First reading: "
            "soon after ready (p50 over the instances); idle: the readings after the drain, when every "
            "accepted event was stored (median).",
            "",
            memory_table(memory),
            "",
            "## Event -> stored row",
            "",
            f"{len(delays)} events stored; delay from the event's time to its row "
            f"p50 {p50} ms, p99 {p99} ms. By minute of the load (the event's own time):",
            "",
            delay_by_minute(delays),
            "",
            *(demo.cpu.section if demo.cpu else []),
            "## Checks",
            "",
            *(check.line() for check in checks),
            "",
            "## Notes",
            "",
            *(f"- {note}" for note in demo.notes),
            "",
            "## Timeline",
            "",
            "![autoscale](autoscale.png)",
            "",
            "Top: accepted events per second (and 429s); second: ready instances per function (dashed: "
            "desired); third: event-store consumer lag and this run's stored rows; bottom: event -> row "
            "delay of the events stored in each second. " + LAG_MEANING,
            "",
        ]
    )
