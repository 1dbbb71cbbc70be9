"""Run one failure scenario: load through nginx, break one part, restore it, check, report.

Timeline of a run (durations are options of `python -m loadtest.scenarios`):

    before ──> failure (part broken) ──> restoring (starting, waiting until ready) ──> after ──> drain
    load at --rate ......................................................................|  no load

The drain waits until every event answered 202 is in `events` and Flink's aggregates of this
run's products equal the sums over its stored orders (or until --drain-timeout).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from knative_standins import pod_cpu
from ripple_dashboard.links import dashboard_link, dashboard_live_link

from . import cpu
from .burstplan import BurstOptions
from .config import LoadConfig
from .driver import LoadDriver, Mix
from .faults import ComponentDown, Fault, PostgresSlow, uninterruptible
from .probes import Database, FlinkJob, KafkaLag, start_probes
from .report import plot_timeline, render_markdown, write_csvs
from .shop import Shop, TokenSource, new_run_id
from .stats import (
    INFO,
    Check,
    Outcome,
    Phase,
    PhaseSummary,
    Sample,
    check_fast_unavailable,
    check_flink,
    check_kept_accepting,
    check_overload,
    check_recovered,
    check_stored_once,
    phase_table,
    reasons_table,
    sales_of,
    summarize,
    timeline,
    verdict,
)

log = logging.getLogger("loadtest")
T = TypeVar("T")
# A row of a run's table: what to do, how long to keep the load on afterwards (or a function
# asked once the action is done: a deadline's rest), the phase it closes (None: it goes on).
Step = tuple[Callable[[], None], float | Callable[[], float], str | None]


@dataclass
class Options:
    rate: float = 15.0  # requests/s; ~1.9 events each. Below nginx's per-client 20 r/s (strict).
    bursts: BurstOptions = field(default_factory=BurstOptions)  # the bursts scenario's sizes
    before_s: float = 20.0
    failure_s: float = 30.0
    after_s: float = 30.0
    drain_timeout_s: float = 300.0
    overload_rate: float = 150.0
    workers: int = 16
    unavailable_limit_s: float = 6.0  # gateway KAFKA_DELIVERY_TIMEOUT_MS (5 s) + 1 s


@dataclass
class Run:
    """Everything a scenario's checks may look at."""

    name: str
    options: Options
    driver: LoadDriver
    phases: list[Phase] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    summaries: dict[str, PhaseSummary] = field(default_factory=dict)
    flink_before: str | None = None
    flink_after: str | None = None
    notes: list[str] = field(default_factory=list)

    def outcomes_in(self, phase: str) -> list[Outcome]:
        chosen = next((p for p in self.phases if p.name == phase), None)
        if chosen is None:
            return []
        return [o for o in self.driver.snapshot() if chosen.start <= o.start < chosen.end]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    what: str  # the failure, in words, for the report
    fault: Callable[[LoadConfig, Options], Fault | None]
    checks: Callable[[Run], list[Check]]
    failure_s: float | None = None  # overrides Options.failure_s
    retries: int = 1
    component: str | None = None  # must be ready before the run starts
    failure_label: str = "failure"  # the phase's name in the report
    overload: bool = False  # the "failure" is --overload-rate instead of --rate
    drill: Callable[..., Drill] | None = None  # a Drill of its own (its steps, drain, checks)


def _burst_drill(*args, **kwargs) -> Drill:
    from .bursts import BurstDrill  # built on this module's Drill: imported when it is used

    return BurstDrill(*args, **kwargs)


def _failure_checks(what: str, keeps_accepting: bool) -> Callable[[Run], list[Check]]:
    def checks(run: Run) -> list[Check]:
        found = []
        if keeps_accepting:
            found.append(check_kept_accepting(run.summaries["failure"], what))
        found.append(check_recovered(run.summaries.get("after"), what))
        return found

    return checks


def _kafka_checks(run: Run) -> list[Check]:
    during = run.summaries["failure"]
    latencies = [o.latency_s for o in run.outcomes_in("failure") if o.status == 503]
    found = check_fast_unavailable(during, latencies, run.options.unavailable_limit_s)
    found.append(check_recovered(run.summaries.get("after"), "Kafka is back"))
    return found


def _baseline_checks(run: Run) -> list[Check]:
    return [check_kept_accepting(run.summaries["steady"], "nothing is broken")]


def _overload_checks(run: Run) -> list[Check]:
    rejected = [o.latency_s for o in run.outcomes_in("overload") if o.status == 429]
    return check_overload(
        run.summaries.get("before"), run.summaries["overload"], rejected, run.driver.missing_retry_after
    )


def _stopped(component: str, label: str, what: str) -> Scenario:
    """<component>-down: the component stopped under load, then started; the gateway keeps accepting."""
    return Scenario(
        f"{component}-down",
        f"{label} stopped under load",
        what,
        lambda config, options: ComponentDown(config.stack, component),
        _failure_checks(f"{label} is down", keeps_accepting=True),
        component=component,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _stopped(
            "flink",
            "Flink",
            "Flink (JobManager and TaskManager) stopped, then started; the job resumes from its newest "
            "retained checkpoint",
        ),
        _stopped(
            "postgres",
            "PostgreSQL",
            "PostgreSQL stopped, then started; the event-store dispatcher retries, Flink's sink fails and "
            "the job restarts from its checkpoint",
        ),
        Scenario(
            "postgres-slow",
            "PostgreSQL slow under load",
            "a session takes EXCLUSIVE locks on events and the aggregate tables 4 s out of every 5 s: "
            "writes stall in bursts, reads go on (like a long migration or a forgotten transaction)",
            lambda config, options: PostgresSlow(config.postgres_dsn),
            _failure_checks("PostgreSQL is slow", keeps_accepting=True),
            component="postgres",
        ),
        Scenario(
            "kafka-down",
            "Kafka stopped under load",
            "the Kafka broker stopped, then started: the gateway must answer 503 (never 202 for an event "
            "Kafka did not acknowledge), and 202 again once Kafka is back",
            lambda config, options: ComponentDown(config.stack, "kafka"),
            _kafka_checks,
            failure_s=20.0,
            component="kafka",
        ),
        Scenario(
            "baseline",
            "Steady load, nothing broken",
            "nothing is broken: the reference run (and a quick check that the whole pipeline works)",
            lambda config, options: None,
            _baseline_checks,
            failure_s=10.0,
            failure_label="steady",
        ),
        Scenario(
            "overload",
            "Far above nginx's limits",
            "the offered load jumps from --rate to --overload-rate requests/s from one address and one "
            "client: nginx must answer the excess with a fast 429 and serve the rest normally",
            lambda config, options: None,
            _overload_checks,
            failure_s=20.0,
            failure_label="overload",
            overload=True,
            retries=0,  # the offered load stays what it says; Retry-After is counted, not obeyed
        ),
        Scenario(
            "bursts",
            "Issue 19's bursts: the notifications path through kills and outages",
            "three bursts of shop traffic (most orders flagged) through nginx, every function back at zero "
            "in the idle gaps; during the bursts a notifier instance, the order-alerts activator and the "
            "notifier Trigger's dispatcher are killed, RabbitMQ restarted and PostgreSQL stopped",
            lambda config, options: None,
            lambda run: [],  # the drill's own (bursts.py)
            failure_label="bursts",
            drill=_burst_drill,
        ),
    )
}


def _preflight(config: LoadConfig, scenario: Scenario) -> None:
    from ripple_stack.secrets import load_secrets
    from ripple_stack.stack import Stack

    if scenario.component is None:
        return
    stack = Stack(config.stack, lambda message: None)
    component = stack.component(scenario.component)
    reason = component.probe(config.stack, load_secrets(config.stack))
    if reason is not None:
        raise SystemExit(
            f"loadtest: {scenario.component} is not ready ({reason}): someone may be testing with it "
            f"stopped; wait, or `make start-{scenario.component}`, then rerun."
        )


def _converged(database: Database, accepted: set[str], check_flink_too: bool) -> bool:
    stored, _ = database.stored_ids()
    if not accepted <= stored:
        return False
    if not check_flink_too:
        return True
    return database.expected_sales() == database.flink_sales()


@dataclass
class Drill:
    """One scenario run's moving parts: the load, the probes, the fault, and the phase clock."""

    scenario: Scenario
    config: LoadConfig
    options: Options
    run: Run
    run_id: str
    source: str
    probes: list
    database: Database
    flink: FlinkJob
    fault: Fault | None
    t0: float = field(default_factory=time.time)
    mark: float = 0.0
    t_end: float = 0.0
    converged_after: float | None = None
    totals_before: dict | None = None
    cpu: cpu.Meter | None = None  # the programs' CPU from the start of the load to the end

    @property
    def driver(self) -> LoadDriver:
        return self.run.driver

    def phase(self, name: str | None) -> None:
        """Close the phase that began at the last mark (a restore that took no time is not one)."""
        if name is None:
            return
        now = time.time()
        if now - self.mark > 0.5 or name != "restoring":
            self.run.phases.append(Phase(name, self.mark, now))
        self.mark = now

    def break_it(self) -> None:
        if self.fault is not None:
            log.info("%s: injecting: %s", self.scenario.name, self.scenario.what)
            self.fault.inject()
        elif self.scenario.overload:
            self.driver.set_rate(self.options.overload_rate)

    def restore(self) -> None:
        with uninterruptible():
            if self.fault is not None:
                log.info("%s: restoring", self.scenario.name)
                self.fault.restore()
            elif self.scenario.overload:
                self.driver.set_rate(self.options.rate)

    def drain(self) -> None:
        """Stop the load and wait until every 202 is stored (and Flink caught up, if it ran)."""
        self.driver.stop()
        options = self.options
        log.info("%s: load stopped; draining (up to %.0f s)", self.scenario.name, options.drain_timeout_s)
        # A job that ran before the drill must run after it and catch up; without one before,
        # only the store is waited for (the Flink check then says it was skipped).
        expect_flink = self.run.flink_before is not None
        started = time.monotonic()
        while time.monotonic() - started < options.drain_timeout_s:
            self.run.flink_after = _safe(self.flink.state)
            flink_ready = self.run.flink_after == "RUNNING"
            if (not expect_flink or flink_ready) and _safe(
                partial(_converged, self.database, self.driver.accepted, expect_flink and flink_ready)
            ):
                self.converged_after = time.monotonic() - started
                return
            time.sleep(2)

    def steps(self) -> list[Step]:
        """The run as a table: (what to do, how long to keep the load on afterwards, phase name).

        The time to keep may be a function, asked once the action is done (a deadline's rest).
        """
        scenario, options = self.scenario, self.options
        failure_s = scenario.failure_s if scenario.failure_s is not None else options.failure_s
        return [
            (self.driver.start, options.before_s, "before"),
            (self.break_it, failure_s, scenario.failure_label),
            (self.restore, 0.0, "restoring"),
            (lambda: None, options.after_s, "after"),
            (self.drain, 0.0, "drain"),
        ]

    def stop(self) -> None:
        with uninterruptible():
            if self.fault is not None:
                self.fault.restore()
            self.driver.stop()
            for probe in self.probes:
                probe.stop()
        self.t_end = time.time()

    # --- what a Drill of its own may say differently ----------------------------------------------

    def checks(self) -> list[Check]:
        return self.scenario.checks(self.run)

    def sections(self) -> list[str]:
        """Markdown sections of the report after the checks."""
        return []

    def shaded(self) -> list[Phase]:
        """The phases the timeline shades (the first red, the others orange)."""
        return [p for p in self.run.phases if p.name in (self.scenario.failure_label, "restoring")]

    def own_components(self) -> set[str]:
        """Components this drill stops or restarts itself (not interference)."""
        return {self.scenario.component} if self.scenario.component else set()

    def load_note(self) -> str:
        options = self.options
        return (
            f"load: {options.rate:g} req/s (~1.9 events each: 30 % checkout batches of 4, "
            "binary mode otherwise)"
            + (f", {options.overload_rate:g} req/s during the overload" if self.scenario.overload else "")
            + f", {self.driver.workers} worker threads, target {self.config.target_url}"
        )


def walk(steps: list[Step], phase: Callable[[str | None], None]) -> None:
    """Run a table of steps: do each, keep the load on for its seconds, close its phase.

    The scenarios' Drill and the autoscale demo are both written as such a table."""
    for action, keep_s, phase_name in steps:
        action()
        time.sleep(keep_s() if callable(keep_s) else keep_s)
        phase(phase_name)


def run_scenario(name: str, config: LoadConfig, options: Options) -> tuple[Path, str]:
    drill = _start(name, config, options)
    try:
        walk(drill.steps(), drill.phase)
    finally:
        drill.stop()
    if drill.cpu is not None:
        drill.cpu.stop(len(drill.driver.accepted))
    run = drill.run
    run.samples = [s for probe in drill.probes for s in probe.samples]
    outcomes = drill.driver.snapshot()
    for p in run.phases:
        run.summaries[p.name] = summarize(p, outcomes, run.samples)
    checks, backlog_left = _checks(drill)
    _add_notes(drill)
    return _report(drill, checks, backlog_left, outcomes)


def _start(name: str, config: LoadConfig, options: Options) -> Drill:
    scenario = SCENARIOS[name]
    _preflight(config, scenario)
    run_id = new_run_id(name)
    source = f"/loadtest/{run_id}"
    tokens = TokenSource(config.token_url, config.client_id, config.client_secret)
    driver = LoadDriver(
        config.target_url,
        tokens,
        Shop(run_id, source),
        rate=options.rate,
        workers=max(options.workers, 32) if name == "overload" else options.workers,
        retries=scenario.retries,
        mix=Mix(pageview=0.4, order=0.2, payment=0.1, batch=0.3),
    )
    probes, database, flink = start_probes(config, source, run_id)
    drill = (scenario.drill or Drill)(
        scenario,
        config,
        options,
        Run(name, options, driver),
        run_id,
        source,
        probes,
        database,
        flink,
        scenario.fault(config, options),
    )
    log.info("%s: run id %s, load %s req/s to %s", name, run_id, options.rate, config.target_url)
    log.info("%s: watch it live: %s", name, dashboard_live_link(config.stack, time.time() - 60))
    drill.run.flink_before = _safe(flink.state)
    drill.totals_before = _safe(database.tenant_totals)
    drill.cpu = cpu.Meter(partial(cpu.program_pids, config.stack))
    drill.cpu.start()
    drill.mark = drill.t0 = time.time()
    return drill


def _checks(drill: Drill) -> tuple[list[Check], bool]:
    """Every check of the run, and whether a backlog was left in Kafka at the end."""
    run, driver, database, options = drill.run, drill.driver, drill.database, drill.options
    checks: list[Check] = []
    found = _retrying(database.stored_ids)
    store_complete = backlog_left = False
    if found is None:
        checks.append(Check("every 202 event stored", "FAIL", "PostgreSQL not readable after the run"))
    else:
        stored, rows = found
        store_complete = driver.accepted <= stored
        checks += check_stored_once(
            driver.accepted, driver.sent, stored, rows, _safe(database.dead_lettered) or 0
        )
        if not store_complete:
            lag = _last_probe(run.samples, "lag_event_store")
            backlog_left = bool(lag)
            run.notes.append(
                f"the event-store's consumer group was still {lag:.0f} records behind at the end: missing "
                "events may still be in Kafka (other load on the shared stack?): "
                "`python -m loadtest.scenarios recheck <this directory>` later tells late from lost"
                if lag
                else "the event-store had no lag left at the end: missing events did not arrive"
            )
    accepted_orders = [data for id_, data in driver.orders.items() if id_ in driver.accepted]
    converged = drill.converged_after if drill.converged_after is not None else options.drain_timeout_s
    checks.append(
        check_flink(
            _safe(database.expected_sales),
            _safe(database.flink_sales),
            run.flink_after,
            converged,
            was_running=run.flink_before is not None,
            store_complete=store_complete,
            bounds=(sales_of(accepted_orders), sales_of(driver.orders.values())),
        )
    )
    checks += drill.checks()
    checks.append(_drain_check(drill.converged_after, options.drain_timeout_s))
    totals_after = _safe(database.tenant_totals)
    if drill.totals_before and totals_after:
        delta = {k: round(totals_after[k] - drill.totals_before[k], 2) for k in totals_after}
        checks.append(
            Check(
                "acme tenant totals grew",
                INFO,
                f"orders +{delta['orders']:g}, payments +{delta['payments']:g}, "
                f"pageviews +{delta['pageviews']:g} "
                "(tenant-wide: includes other clients' acme events, so informative only)",
            )
        )
    return checks, backlog_left


def _add_notes(drill: Drill) -> None:
    run, fault, scenario = drill.run, drill.fault, drill.scenario
    if fault is not None and fault.interference:
        run.notes.append(fault.interference)
    run.notes.extend(_other_restarts(drill.config, drill.t0, drill.t_end, drill.own_components()))
    restoring = next((p for p in run.phases if p.name == "restoring"), None)
    if restoring is not None and fault is not None:
        run.notes.append(
            f"restoring took {restoring.duration:.0f} s (start command until the component was ready)"
        )
    run.notes.append(
        f"run id {drill.run_id}: events have source {drill.source}; products are named {drill.run_id}-<sku>"
    )
    run.notes.append(drill.load_note())
    run.notes.append(pod_cpu.applied())
    if scenario.retries:
        run.notes.append(
            "requests answered 429/503 or not at all are retried once, with the same event ids, "
            "after Retry-After"
        )


def _report(
    drill: Drill, checks: list[Check], backlog_left: bool, outcomes: list[Outcome]
) -> tuple[Path, str]:
    """report.md, timeline.png, the CSVs and run.json in a new directory; the console summary."""
    run, driver, scenario, name = drill.run, drill.driver, drill.scenario, drill.scenario.name
    directory = drill.config.reports_dir / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    rows_timeline = timeline(outcomes, run.samples, drill.t0, drill.t_end)
    summaries = [run.summaries[p.name] for p in run.phases]
    write_csvs(directory, rows_timeline, summaries)
    # What the client knows, so `--recheck <dir>` can verify again once a backlog has drained.
    (directory / "run.json").write_text(
        json.dumps(
            {
                "scenario": name,
                "run_id": drill.run_id,
                "source": drill.source,
                "flink_was_running": run.flink_before is not None,
                "accepted": sorted(driver.accepted),
                "sent": sorted(driver.sent),
                "orders": driver.orders,
            }
        )
    )
    plot_timeline(
        directory / "timeline.png", rows_timeline, drill.t0, drill.shaded(), f"{name}: {scenario.title}"
    )
    dashboard = dashboard_link(drill.config.stack, drill.t0 - 60, drill.t_end + 30)
    intro = (
        f"{scenario.what}. Started {datetime.fromtimestamp(drill.t0, UTC):%Y-%m-%d %H:%M:%S} UTC. "
        f"The run on the local dashboard: [{dashboard}]({dashboard})."
    )
    markdown = render_markdown(
        f"Scenario {name}: {scenario.title}",
        intro,
        summaries,
        checks,
        run.notes,
        reasons=dict(driver.reasons),
        backlog_left=backlog_left,
        sections=[*drill.sections(), *(drill.cpu.section if drill.cpu else [])],
    )
    (directory / "report.md").write_text(markdown)
    drill.database.close()
    summary = "\n".join(
        [
            phase_table(summaries),
            "",
            *(c.line() for c in checks),
            "",
            *([reasons_table(dict(driver.reasons)), ""] if driver.reasons else []),
            f"verdict: {verdict(checks, backlog_left)}",
            f"report: {directory / 'report.md'}",
            f"dashboard: {dashboard}",
        ]
    )
    return directory, summary


def recheck(directory: Path, config: LoadConfig) -> tuple[str, bool]:
    """Run the store and Flink checks of a finished run again (e.g. after a backlog drained).

    Appends a "Re-check" section to its report.md; returns that section and whether it passed.
    """
    saved = directory / "run.json"
    if not saved.exists():
        raise SystemExit(f"loadtest: {saved} is missing: give the report directory of a scenario run.")
    data = json.loads(saved.read_text())
    database = Database(config.postgres_dsn, data["source"], data["run_id"])
    accepted, sent, orders = set(data["accepted"]), set(data["sent"]), data["orders"]
    try:
        stored, rows = database.stored_ids()
        checks = check_stored_once(accepted, sent, stored, rows, _safe(database.dead_lettered) or 0)
        checks.append(
            check_flink(
                _safe(database.expected_sales),
                _safe(database.flink_sales),
                _safe(FlinkJob(config.stack.flink_rest_url).state),
                0,
                was_running=data["flink_was_running"],
                store_complete=accepted <= stored,
                bounds=(
                    sales_of(d for i, d in orders.items() if i in accepted),
                    sales_of(orders.values()),
                ),
            )
        )
    finally:
        database.close()
    lag = _safe(KafkaLag(config.stack.kafka_bootstrap))
    lines = [f"## Re-check at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", ""]
    lines += [f"**Verdict of the re-check: {verdict(checks)}**", ""]
    lines += [check.line() for check in checks]
    if lag:
        lines.append(
            f"- consumer lag now: event-store {lag.get('lag_event_store')}, flink {lag.get('lag_flink')}"
        )
    section = "\n".join(lines) + "\n"
    report = directory / "report.md"
    if report.exists():
        report.write_text(report.read_text() + "\n" + section)
    return section, verdict(checks) == "PASS"


def _drain_check(converged_after: float | None, timeout_s: float) -> Check:
    name = "backlog drained after the load stopped"
    if converged_after is None:
        return Check(name, "FAIL", f"not within {timeout_s:.0f} s (see the checks above for what is missing)")
    return Check(
        name, "PASS", f"everything stored and aggregated {converged_after:.0f} s after the load stopped"
    )


def _safe(read: Callable[[], T]) -> T | None:
    """PostgreSQL or Flink may be the part that is down (or restarting): None, and say so once."""
    try:
        return read()
    except Exception as error:
        message = f"reading failed ({getattr(read, '__name__', 'read')}): {str(error).splitlines()[0]}"
        if message != _last_warning[0]:  # once per outage, not every poll
            log.warning("%s", message)
            _last_warning[0] = message
        return None


_last_warning = [""]


def _other_restarts(config: LoadConfig, t0: float, t_end: float, own: set[str]) -> list[str]:
    """Processes of the shared stack that someone else restarted or stopped during the run."""
    from ripple_stack.supervisor import Supervisor

    try:
        processes = Supervisor(config.stack).processes()
    except Exception:
        return []
    found = []
    for info in sorted(processes.values(), key=lambda info: info["name"]):
        if info["group"] in own:
            continue
        if info["statename"] != "RUNNING":
            found.append(f"interference: {info['name']} is {info['statename']} at the end of the run")
        elif t0 <= info["start"] <= t_end:
            at = datetime.fromtimestamp(info["start"], UTC)
            found.append(f"interference: {info['name']} was (re)started at {at:%H:%M:%S} UTC during the run")
    return found


def _last_probe(samples: list[Sample], name: str) -> float | None:
    values = [s.values[name] for s in sorted(samples, key=lambda s: s.t) if s.values.get(name) is not None]
    return float(values[-1]) if values else None  # type: ignore[arg-type]


def _retrying(read: Callable[[], T], attempts: int = 30) -> T | None:
    for _ in range(attempts):
        value = _safe(read)
        if value is not None:
            return value
        time.sleep(2)
    return None
