"""The bursts scenario (issue 19's run) as a Drill: its table of steps, its drain, its checks.

    to zero ──> burst 1 (faults at their offsets) ──> idle until every function is at zero ──> burst 2
    ──> ... ──> drain (every 202 stored, Flink exact, every flagged order's notification sent)

The timetable and the verdicts are pure (burstplan.py); this module breaks things at the planned
moments (faults.py), reads what the notifications path did (order_alerts, notifications, the mail
sink's files, dead_letters) and hands the report its checks and the delay table.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ripple_stack.components.functions import KNATIVE_DIR, knative_functions
from ripple_stack.settings import Settings

from .burstplan import (
    KILL_INSTANCE,
    KILL_PROGRAM,
    RECOVERY_AFTER_S,
    RECOVERY_STEP_S,
    RESTART,
    SENT,
    STOP,
    BurstOptions,
    Delays,
    FaultAt,
    MailRate,
    PathReading,
    PlannedStep,
    RecoveryRow,
    check_back_to_zero,
    check_delay,
    check_path,
    delay_table,
    delays,
    hop_rows,
    hop_table,
    mail_rate_table,
    mail_rates,
    parse_mail_head,
    plan,
    recovery_rows,
    recovery_table,
)
from .faults import ComponentDown, Fault, Kill, Restart, uninterruptible
from .probes import Database, Probe, Reading
from .runner import Drill, Step, _converged, _safe
from .shop import ORDER
from .stats import Check, Phase, PhaseSummary, check_kept_accepting, summarize

log = logging.getLogger("loadtest")


def alert_threshold() -> float:
    """order-alerts' ALERT_THRESHOLD from its manifest (what decides which orders are flagged)."""
    manifest = yaml.safe_load((KNATIVE_DIR / "order-alerts" / "service.yaml").read_text())
    env = manifest["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return float(next((e["value"] for e in env if e["name"] == "ALERT_THRESHOLD"), 1000))


class PathDatabase:
    """This run's flagged orders and what became of them, in PostgreSQL."""

    def __init__(self, database: Database, threshold: float) -> None:
        self.database = database
        self.threshold = threshold

    def notified(self) -> Reading:
        """The probe: notifications recorded `sent` for this run's orders so far."""
        (count,) = self.database._run(
            "SELECT count(*) FROM order_alerts a JOIN notifications n ON n.id = a.alert_id "
            "WHERE a.trigger_source = %s AND n.state = 'sent'",
            (self.database.source,),
        )[0]
        return {"notified": float(count)}

    def flagged(self) -> dict[str, float]:
        rows = self.database._run(
            "SELECT id, extract(epoch FROM time) FROM events WHERE source = %s AND type = %s "
            "AND (data->>'amount')::numeric > %s",
            (self.database.source, ORDER, self.threshold),
        )
        return {row[0]: float(row[1]) for row in rows}

    def all_notified(self) -> bool:
        """Every stored flagged order of the run has its notification `sent` (the drain's goal)."""
        (missing,) = self.database._run(
            "SELECT count(*) FROM events e LEFT JOIN order_alerts a "
            "ON a.trigger_source = e.source AND a.trigger_id = e.id "
            "LEFT JOIN notifications n ON n.id = a.alert_id AND n.state = 'sent' "
            "WHERE e.source = %s AND e.type = %s AND (e.data->>'amount')::numeric > %s AND n.id IS NULL",
            (self.database.source, ORDER, self.threshold),
        )[0]
        return missing == 0

    def stamps(self) -> list[tuple[float | None, ...]]:
        """Per flagged order of the run, the moments of burstplan.STAMPS (epoch s, None if not reached)."""
        rows = self.database._run(
            "SELECT extract(epoch FROM e.time), extract(epoch FROM e.received_at), "
            "extract(epoch FROM a.created_at), extract(epoch FROM a.emitted_at), "
            "extract(epoch FROM n.recorded_at), extract(epoch FROM n.sent_at) "
            "FROM events e LEFT JOIN order_alerts a ON a.trigger_source = e.source AND a.trigger_id = e.id "
            "LEFT JOIN notifications n ON n.id = a.alert_id "
            "WHERE e.source = %s AND e.type = %s AND (e.data->>'amount')::numeric > %s",
            (self.database.source, ORDER, self.threshold),
        )
        return [tuple(None if v is None else float(v) for v in row) for row in rows]

    def reading(self, mail_dir: Path, since: float, accepted_flagged: int) -> PathReading:
        source = self.database.source
        alerts: dict[str, list[str]] = {}
        for trigger_id, alert_id in self.database._run(
            "SELECT trigger_id, alert_id FROM order_alerts WHERE trigger_source = %s", (source,)
        ):
            alerts.setdefault(trigger_id, []).append(alert_id)
        alert_ids = sorted({a for ids in alerts.values() for a in ids})
        notifications = {
            row[0]: (row[1], None if row[2] is None else float(row[2]))
            for row in self.database._run(
                "SELECT id, state, extract(epoch FROM sent_at) FROM notifications WHERE id = ANY(%s)",
                (alert_ids,),
            )
        }
        (dead,) = self.database._run(
            "SELECT count(*) FROM dead_letters WHERE source = %s OR id = ANY(%s)", (source, alert_ids)
        )[0]
        (dead_any,) = self.database._run(
            "SELECT count(*) FROM dead_letters WHERE received_at >= to_timestamp(%s)", (since,)
        )[0]
        return PathReading(
            flagged=self.flagged(),
            alerts=alerts,
            notifications=notifications,
            mails=read_mails(mail_dir, since, set(alert_ids)),
            dead_letters=int(dead),
            dead_letters_any=int(dead_any),
            accepted_flagged=accepted_flagged,
        )


def read_mails(directory: Path, since: float, alert_ids: set[str]) -> dict[str, list[str]]:
    """Message-IDs of the mail files written since `since` that carry one of these alert ids."""
    found: dict[str, list[str]] = {}
    if not directory.exists():
        return found
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.endswith(".eml") or entry.stat().st_mtime < since - 5:
                continue
            try:
                with open(entry.path, "rb") as handle:
                    mail = parse_mail_head(handle.read(4096))
            except FileNotFoundError:
                continue
            if mail is not None and mail.event_id in alert_ids:
                found.setdefault(mail.event_id, []).append(mail.message_id)
    return found


def functions_busy(settings: Settings) -> dict[str, int] | None:
    """Functions that still have instances (None when an activator does not answer)."""
    busy = {}
    for function in knative_functions():
        status = function.serving_status(settings)
        if status is None:
            return None
        if not status["scaled_to_zero"]:
            busy[function.name] = len(status["instances"])
    return busy


def notifier_trigger_idle(settings: Settings) -> bool:
    """The notifier Trigger's queue is empty and nothing is in flight (no redelivery to come)."""
    port = (
        settings.ports["trigger_dispatchers"] + 1
    )  # Trigger dispatchers in name order: event-store, notifier
    with urllib.request.urlopen(f"http://{settings.host}:{port}/metrics", timeout=5) as response:
        families = text_string_to_metric_families(response.read().decode())
    values = {
        sample.name: sample.value
        for family in families
        for sample in family.samples
        if sample.name in ("ripple_trigger_queue_depth", "ripple_trigger_in_flight")
    }
    return bool(values) and not any(values.values())


@dataclass
class BurstDrill(Drill):
    """Drill whose load comes in bursts with faults inside them and idle gaps down to zero between."""

    faults: list[tuple[FaultAt, Fault, float, float | None]] = field(default_factory=list)  # injected, ready
    zero_waits: list[tuple[str, float, bool]] = field(default_factory=list)
    fault_threads: list[threading.Thread] = field(default_factory=list)
    burst_started: float = 0.0
    path: PathDatabase | None = None
    found_delays: Delays | None = None
    found_hops: list[tuple[float | None, ...]] | None = None
    found_rates: list[MailRate] | None = None
    found_recovery: list[RecoveryRow] | None = None

    def __post_init__(self) -> None:
        burst = self.bursts
        self.driver.compose = partial(
            self.driver.shop.burst, burst.batch, burst.order_share, burst.flagged_share
        )
        self.driver.set_rate(0)
        threshold = alert_threshold()
        self.path = PathDatabase(self.database, threshold)
        # The probe's thread gets a connection of its own.
        own = Database(self.config.postgres_dsn, self.source, self.run_id)
        probe = Probe("notifications", PathDatabase(own, threshold).notified)
        probe.start()
        self.probes.append(probe)

    @property
    def bursts(self) -> BurstOptions:
        return self.options.bursts

    # --- the table --------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        return [(self._action(step), self._keep(step), step.phase) for step in plan(self.bursts)]

    def _action(self, step: PlannedStep) -> Callable[[], None]:
        if step.kind == "zero":
            return partial(self._idle, step.phase)
        if step.kind == "burst":
            return partial(self._burst, step.burst)
        if step.kind == "fault" and step.fault is not None:
            return partial(self._inject, step.fault)
        if step.kind == "restore" and step.fault is not None:
            return partial(self._restore, step.fault)
        return self.drain

    def _keep(self, step: PlannedStep) -> Callable[[], float]:
        until = step.until_s
        return lambda: 0.0 if until is None else max(0.0, self.burst_started + until - time.time())

    def _burst(self, number: int) -> None:
        log.info(
            "bursts: burst %d of %d: %g events/s (%g req/s of %d) for %.0f s",
            number,
            self.bursts.bursts,
            self.bursts.rate,
            self.bursts.request_rate,
            self.bursts.batch,
            self.bursts.burst_s,
        )
        self.burst_started = time.time()
        if not self.driver.started:
            self.driver.start()
        self.driver.set_rate(self.bursts.request_rate)

    def _idle(self, gap: str) -> None:
        """Stop the load; wait the fixed gap, or until every function is back at zero."""
        self.driver.set_rate(0)
        self._faults_done()
        if self.bursts.gap_s is not None:
            time.sleep(self.bursts.gap_s)
            return
        started = time.monotonic()
        last_say = 0.0
        while True:
            busy = functions_busy(self.config.stack)
            waited = time.monotonic() - started
            if busy == {} or waited >= self.bursts.zero_timeout_s:
                self.zero_waits.append((gap, waited, busy == {}))
                log.info(
                    "bursts: %s: %s after %.0f s",
                    gap,
                    "every function at zero" if busy == {} else f"still {busy}",
                    waited,
                )
                return
            if waited - last_say >= 30:
                log.info("bursts: %s: waiting for zero: %s", gap, busy)
                last_say = waited
            time.sleep(2)

    def _fault(self, fault: FaultAt) -> Fault:
        settings = self.config.stack
        if fault.kind == KILL_INSTANCE:
            return Kill(settings, instance_of=fault.target)
        if fault.kind == KILL_PROGRAM:
            return Kill(settings, program=fault.target)
        if fault.kind == RESTART:
            return Restart(settings, fault.target)
        if fault.kind == STOP:
            return ComponentDown(settings, fault.target)
        raise ValueError(f"unknown fault kind {fault.kind!r}: use one of burstplan's")

    def _inject(self, fault: FaultAt) -> None:
        """Break it; a kill or restart runs in a thread of its own until the part is back, so the
        burst keeps its planned length (a RabbitMQ restart takes a minute here)."""
        log.info("bursts: %s", fault.label)
        switch = self._fault(fault)
        injected = time.time()
        self.faults.append((fault, switch, injected, None))
        index = len(self.faults) - 1
        if fault.kind == STOP:  # stays down until its restore step
            switch.inject()
            return

        def run() -> None:
            try:
                switch.inject()
            except Exception as error:  # reported, and the run goes on: the checks tell the damage
                log.warning("bursts: %s failed: %s", fault.label, error)
                switch.description = f"{fault.label} failed: {error}"
            finally:
                self.faults[index] = (fault, switch, injected, time.time())

        thread = threading.Thread(target=run, name=f"fault-{fault.target}", daemon=True)
        thread.start()
        self.fault_threads.append(thread)

    def _faults_done(self) -> None:
        for thread in self.fault_threads:
            thread.join(timeout=300)

    def _restore(self, fault: FaultAt) -> None:
        for index, (planned, switch, injected, ready) in enumerate(self.faults):
            if planned == fault and ready is None:
                log.info("bursts: starting %s", fault.target)
                with uninterruptible():
                    switch.restore()
                self.faults[index] = (planned, switch, injected, time.time())

    def drain(self) -> None:
        """Stop the load; wait until every 202 is stored, Flink caught up and every flagged order
        of the run has its notification sent, then until the notifier Trigger is idle."""
        self.driver.stop()
        self._faults_done()
        assert self.path is not None
        timeout = self.options.drain_timeout_s
        log.info("bursts: load stopped; draining (up to %.0f s)", timeout)
        expect_flink = self.run.flink_before is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.run.flink_after = _safe(self.flink.state)
            flink_ready = self.run.flink_after == "RUNNING"
            stored = _safe(
                partial(_converged, self.database, self.driver.accepted, expect_flink and flink_ready)
            )
            if (not expect_flink or flink_ready) and stored and _safe(self.path.all_notified):
                self.converged_after = time.monotonic() - started
                break
            time.sleep(3)
        # A redelivery still under way would mail again after the count: wait for the Trigger.
        settle = time.monotonic() + 60
        while time.monotonic() < settle and not _safe(partial(notifier_trigger_idle, self.config.stack)):
            time.sleep(1)

    def stop(self) -> None:
        self._faults_done()
        with uninterruptible():
            for fault, switch, _, ready in self.faults:
                if ready is None:
                    log.info("bursts: restoring %s", fault.target)
                    switch.restore()
        super().stop()

    # --- what the report says ---------------------------------------------------------------------

    def _reading(self) -> PathReading | None:
        assert self.path is not None
        flagged_sent = sum(
            1
            for id_, data in self.driver.orders.items()
            if id_ in self.driver.accepted and data["amount"] > self.path.threshold
        )
        return _safe(partial(self.path.reading, self.config.stack.mail_dir, self.t0, flagged_sent))

    def checks(self) -> list[Check]:
        run = self.run
        bursts = [p for p in run.phases if p.name.startswith("burst ")]
        found = []
        if bursts:
            span = Phase("bursts", bursts[0].start, bursts[-1].end)  # no requests in the gaps
            summary: PhaseSummary = summarize(span, self.driver.snapshot(), run.samples)
            found.append(check_kept_accepting(summary, "the bursts broke things downstream"))
        found.append(check_back_to_zero(self.zero_waits))
        reading = self._reading()
        if reading is None:
            found.append(Check("notifications path", "FAIL", "PostgreSQL not readable after the run"))
            return found
        found += check_path(reading)
        phases = [(p.name, p.start, p.end) for p in run.phases]
        # Each outage: (label, injected, ready again or None if it never was during the run).
        outages = [(f.label, injected, ready) for f, _, injected, ready in self.faults if f.outage]
        self.found_delays = delays(reading, phases, [(i, r or self.t_end) for _, i, r in outages])
        self.found_hops = _safe(self.path.stamps)
        if self.found_hops:
            returned = [outage for outage in outages if outage[2] is not None]
            self.found_recovery = recovery_rows(self.found_hops, returned)
        sent = [stamp[SENT] for stamp in self.found_hops or () if stamp[SENT] is not None]
        self.found_rates = mail_rates(sent, phases) if sent else None
        found += check_delay(self.found_delays, self.bursts.delay_limit_s)
        return found

    def sections(self) -> list[str]:
        lines = ["## Faults", ""]
        for fault, switch, injected, ready in self.faults:
            at = injected - self.t0
            back = f", back after {ready - injected:.1f} s" if ready is not None else ""
            detail = getattr(switch, "detail", "") or switch.description
            lines.append(f"- {at:.0f} s: **{fault.label}**{back}: {detail}")
        if self.found_delays is not None:
            lines += [
                "",
                "## Order -> notification delay",
                "",
                "From each flagged order's `time` (its row in `events`) to `notifications.sent_at` (the SMTP "
                "server's acceptance), by the phase the order was placed in:",
                "",
                delay_table(self.found_delays),
            ]
        if self.found_hops:
            lines += [
                "",
                "## Where the time goes, hop by hop",
                "",
                "Each flagged order's stamps along the path (PostgreSQL's clock; the order's `time` is the "
                "client's): placed -> stored is the event-store branch beside the alert path; alert row -> "
                "mail accepted is what the notifier's `ripple_notifier_alert_to_mail_seconds` measures.",
                "",
                hop_table(hop_rows(self.found_hops)),
            ]
        if self.found_recovery:
            lines += [
                "",
                "## After each outage, when each hop caught up",
                "",
                "The flagged orders placed during each outage (its backlog), then those placed in each "
                f"{RECOVERY_STEP_S:g} s of the {RECOVERY_AFTER_S:g} s after the component was back: the "
                "median of each stamp in seconds after it was back, and the order -> mail p99. Orders "
                "placed after the return wait behind the backlog in each queue (Kafka in front of "
                "order-alerts, the Broker's queue in front of the notifier): a stamp that comes long "
                "after the return shows which hop was still draining.",
                "",
                recovery_table(self.found_recovery),
            ]
        if self.found_rates:
            lines += [
                "",
                "## How fast the path mailed, phase by phase",
                "",
                "Mails the SMTP server accepted in each phase (by `notifications.sent_at`), and the best "
                "10 s inside it: while a burst's load runs the store path and Flink share the CPU with "
                "the alert path; in the gaps it drains alone.",
                "",
                mail_rate_table(self.found_rates),
            ]
        return ["\n".join(lines)]

    def shaded(self) -> list[Phase]:
        return [p for p in self.run.phases if " · " in p.name]

    def own_components(self) -> set[str]:
        return {f.target for f in self.bursts.faults if f.kind != KILL_INSTANCE}

    def load_note(self) -> str:
        b = self.bursts
        return (
            f"load: {b.bursts} bursts of {b.burst_s:.0f} s at {b.rate:g} events/s ({b.request_rate:g} req/s, "
            f"batches of {b.batch}: {b.order_share:.0%} orders, {b.flagged_share:.0%} of them above the "
            f"alert threshold {self.path.threshold if self.path else '?'}), {b.events} events planned; gaps: "
            + ("until every function is at zero" if b.gap_s is None else f"{b.gap_s:g} s")
            + f"; {self.driver.workers} worker threads, target {self.config.target_url}"
        )
