"""The bursts scenario's pure parts: its sizes, its timetable of faults, and its notification checks.

Issue 19's run, as a failure scenario: ~45,000 events in three bursts of 300 events/s through
nginx, every function back at zero in each idle gap between them, and during the bursts a function
instance killed, an activator killed, the notifier Trigger's dispatcher killed, RabbitMQ restarted
and PostgreSQL stopped 20 s. What it proves is the notifications path: every flagged order alerted
once, mailed once, recorded once, nothing dead-lettered, and the order -> notification delay.

No I/O here (loadtest/scenarios/bursts.py does the reading and the breaking), so the timetable and
every verdict are unit-tested (loadtest/tests/test_scenarios_burstplan.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from loadtest.measure import percentile

from .stats import FAIL, INFO, PASS, Check, markdown_table

KILL_INSTANCE, KILL_PROGRAM, RESTART, STOP = "kill-instance", "kill-program", "restart", "stop"


@dataclass(frozen=True)
class FaultAt:
    """One fault of the timetable: in which burst, when (a fraction of the burst), what."""

    burst: int  # 1-based
    at: float  # 0..1 of the burst's length
    kind: str  # KILL_INSTANCE (of a function), KILL_PROGRAM (SIGKILL, supervisord restarts it), RESTART, STOP
    target: str  # function, supervised program or component
    down_s: float = 0.0  # STOP: how long the component stays stopped
    what: str = ""  # KILL_PROGRAM: what the program is, for the report ("order-alerts activator")

    @property
    def label(self) -> str:
        return {
            KILL_INSTANCE: f"{self.target} instance killed",
            KILL_PROGRAM: f"{self.what or self.target} killed",
            RESTART: f"{self.target} restarted",
            STOP: f"{self.target} stopped {self.down_s:g} s",
        }[self.kind]

    @property
    def outage(self) -> bool:
        """A component out of service for a while (not a process that is replaced at once)."""
        return self.kind in (RESTART, STOP)


# Issue 19's run: the order-alerts activator is the "activator" (its KafkaSource must redeliver),
# the notifier's instance the "function instance" (the outbox's send/commit window).
DEFAULT_FAULTS: tuple[FaultAt, ...] = (
    FaultAt(1, 0.3, KILL_INSTANCE, "notifier"),
    FaultAt(1, 0.6, KILL_PROGRAM, "order-alerts", what="order-alerts activator"),
    FaultAt(2, 0.3, KILL_PROGRAM, "trigger-notifier", what="notifier Trigger's dispatcher"),
    FaultAt(2, 0.6, RESTART, "rabbitmq"),
    FaultAt(3, 0.3, STOP, "postgres", 20.0),
)


@dataclass(frozen=True)
class BurstOptions:
    """The run's sizes (defaults: issue 19's run; RIPPLE_LOADTEST_BURST_* and the CLI override them)."""

    bursts: int = 3
    events: int = 45_000  # in all bursts together
    rate: float = 300.0  # events/s during a burst
    batch: int = 20  # events per request (a CloudEvents batch): 15 req/s, below nginx's 20 r/s
    order_share: float = 0.5  # of the events (issue 19: 22,810 orders of 45,620 events)
    flagged_share: float = 0.78  # of the orders, above the alert threshold (issue: 17,717 of 22,810)
    gap_s: float | None = None  # idle between bursts; None: until every function is at zero
    zero_timeout_s: float = 600.0  # how long a gap may wait for zero
    delay_limit_s: float = 10.0  # order -> notification p99 must stay below this
    faults: tuple[FaultAt, ...] = DEFAULT_FAULTS

    @property
    def burst_s(self) -> float:
        return self.events / self.bursts / self.rate

    @property
    def request_rate(self) -> float:
        return self.rate / self.batch

    def validate(self) -> BurstOptions:
        """Raise ValueError saying which option to change when the timetable cannot work."""
        if self.bursts < 1 or self.events < self.bursts or self.rate <= 0 or self.batch < 1:
            raise ValueError(
                "bursts, events, rate and batch must be positive (events at least one per burst)"
            )
        if not (0 < self.order_share <= 1 and 0 <= self.flagged_share <= 1):
            raise ValueError("--order-share must be in (0, 1] and --flagged-share in [0, 1]")
        if self.request_rate > 20:
            raise ValueError(
                f"{self.rate:g} events/s in batches of {self.batch} is {self.request_rate:g} req/s, above "
                "nginx's per-client 20 r/s (strict profile): raise --batch"
            )
        for fault in self.faults:
            if not 1 <= fault.burst <= self.bursts or not 0 <= fault.at < 1:
                raise ValueError(f"fault {fault.label!r} is not inside one of the {self.bursts} bursts")
            if fault.at * self.burst_s + fault.down_s > self.burst_s:
                raise ValueError(
                    f"{fault.label} at {fault.at:.0%} of a {self.burst_s:g} s burst ends after the burst: "
                    "make the bursts longer (--events) or the outage shorter (--postgres-down)"
                )
        return self

    def with_postgres_down(self, seconds: float) -> BurstOptions:
        faults = tuple(replace(f, down_s=seconds) if f.kind == STOP else f for f in self.faults)
        return replace(self, faults=faults)


QUICK = BurstOptions(events=3_000, rate=100.0, batch=10, gap_s=10.0, zero_timeout_s=120.0).with_postgres_down(
    5.0
)


@dataclass(frozen=True)
class PlannedStep:
    """One row of the run's table: what to do, until when to keep the load on, the phase's name."""

    kind: str  # "zero" (stop the load, wait for zero or the gap), "burst", "fault", "restore", "drain"
    burst: int  # 0 before the first burst
    until_s: float | None  # keep the load on until this offset into the burst (None: no waiting)
    phase: str
    fault: FaultAt | None = None


def plan(options: BurstOptions) -> list[PlannedStep]:
    """The run as a table: to zero, then per burst its faults at their offsets, idle gaps, drain."""
    steps = [PlannedStep("zero", 0, None, "to zero")]
    length = options.burst_s
    for burst in range(1, options.bursts + 1):
        marks: list[tuple[float, str, FaultAt]] = []
        for fault in sorted((f for f in options.faults if f.burst == burst), key=lambda f: f.at):
            marks.append((fault.at * length, "fault", fault))
            if fault.kind == STOP:
                marks.append((fault.at * length + fault.down_s, "restore", fault))
        marks.sort(key=lambda mark: mark[0])
        offsets = [offset for offset, _, _ in marks] + [length]
        steps.append(PlannedStep("burst", burst, offsets[0], f"burst {burst}"))
        for (_, kind, fault), until in zip(marks, offsets[1:], strict=True):
            name = fault.label if kind == "fault" else f"{fault.target} starting"
            steps.append(PlannedStep(kind, burst, until, f"burst {burst} · {name}", fault))
        if burst < options.bursts:
            steps.append(PlannedStep("zero", burst, None, f"idle {burst}"))
    steps.append(PlannedStep("drain", options.bursts, None, "drain"))
    return steps


# --- the notifications path's checks -----------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    event_id: str
    message_id: str


def parse_mail_head(head: bytes) -> Mail | None:
    """The notifier's identity headers from the start of a mail file (None when it has none)."""
    found: dict[str, str] = {}
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\n"):
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if sep and name.strip().lower() in (b"message-id", b"x-ripple-event-id"):
            found.setdefault(name.strip().lower().decode(), value.strip().decode(errors="replace"))
    if "x-ripple-event-id" not in found or "message-id" not in found:
        return None
    return Mail(found["x-ripple-event-id"], found["message-id"])


@dataclass(frozen=True)
class PathReading:
    """What the notifications path did with one run's flagged orders, read after the drain."""

    flagged: Mapping[str, float]  # stored order event id -> its time (epoch s): amount above the threshold
    alerts: Mapping[str, Sequence[str]]  # order event id -> alert ids in order_alerts
    notifications: Mapping[str, tuple[str, float | None]]  # alert id -> (state, sent_at epoch s)
    mails: Mapping[str, Sequence[str]]  # alert id -> Message-ID of every mail file carrying it
    dead_letters: int  # rows of this run's events or its alerts
    dead_letters_any: int = 0  # every dead letter received during the run (any source)
    accepted_flagged: int = 0  # flagged orders the driver had answered 202 (the client's count)

    def alert_of(self, order_id: str) -> str | None:
        ids = self.alerts.get(order_id) or ()
        return ids[0] if ids else None

    def sent_at(self, order_id: str) -> float | None:
        alert = self.alert_of(order_id)
        state, sent_at = self.notifications.get(alert, ("", None)) if alert else ("", None)
        return sent_at if state == "sent" else None


def _examples(items: Iterable[str], limit: int = 3) -> str:
    chosen = sorted(items)[:limit]
    return f" (e.g. {', '.join(chosen)})" if chosen else ""


def check_path(reading: PathReading) -> list[Check]:
    """Alerted once, mailed once, recorded once as sent, and no dead letter."""
    flagged = set(reading.flagged)
    checks = []
    missing = {o for o in flagged if not reading.alerts.get(o)}
    twice = {o for o in flagged if len(reading.alerts.get(o) or ()) > 1}
    unflagged = set(reading.alerts) - flagged
    checks.append(
        Check(
            "every flagged order alerted once (order_alerts)",
            FAIL if missing or twice or unflagged else PASS,
            f"{len(flagged)} stored orders above the threshold ({reading.accepted_flagged} of them answered "
            f"202), alerts {sum(len(a) for a in reading.alerts.values())}: missing {len(missing)}"
            f"{_examples(missing)}, more than one {len(twice)}, for orders not flagged {len(unflagged)}",
        )
    )
    alert_ids = {a for o in flagged for a in (reading.alerts.get(o) or ())}
    files = {a: len(reading.mails.get(a) or ()) for a in alert_ids}
    distinct = {a: len(set(reading.mails.get(a) or ())) for a in alert_ids}
    unmailed = {a for a, n in distinct.items() if n == 0}
    twice = {a for a, n in distinct.items() if n > 1}
    resent = {a for a in alert_ids if files[a] > distinct[a]}
    # A mail is its Message-ID: the outbox resends a `pending` one (its sender died between the SMTP
    # server's acceptance and the commit) as the same message, which mail clients show once (issue
    # 19's remedy). Two different Message-IDs for one order would be two mails.
    checks.append(
        Check(
            "every flagged order mailed once (mail sink, by Message-ID)",
            FAIL if unmailed or twice else PASS,
            f"{len(alert_ids)} alerts, {sum(distinct.values())} Message-IDs in {sum(files.values())} mail "
            f"files: not mailed {len(unmailed)}{_examples(unmailed)}, more than one Message-ID {len(twice)}"
            f"{_examples(twice)}",
        )
    )
    checks.append(
        Check(
            "mails resent with the same Message-ID",
            INFO,
            f"{len(resent)} orders' mail delivered again as the same message{_examples(resent)} (a notifier "
            "killed between the SMTP acceptance and recording it `sent`)",
        )
    )
    states = {a: reading.notifications.get(a, ("", None))[0] for a in alert_ids}
    unrecorded = {a for a, s in states.items() if not s}
    pending = {a for a, s in states.items() if s and s != "sent"}
    checks.append(
        Check(
            "every flagged order recorded once as sent (notifications)",
            FAIL if unrecorded or pending else PASS,
            f"{sum(1 for s in states.values() if s == 'sent')} of {len(alert_ids)} rows `sent` (one row per "
            f"event by the primary key): no row {len(unrecorded)}{_examples(unrecorded)}, "
            f"still pending {len(pending)}{_examples(pending)}",
        )
    )
    checks.append(
        Check(
            "no dead letters from the run",
            FAIL if reading.dead_letters else PASS,
            f"{reading.dead_letters} rows in dead_letters for this run's events and alerts "
            f"({reading.dead_letters_any} dead letters of any source arrived during the run)",
        )
    )
    return checks


@dataclass(frozen=True)
class DelayRow:
    """Order -> notification delay of the flagged orders placed in one phase (or a group of them)."""

    name: str
    orders: int
    notified: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


@dataclass(frozen=True)
class Delays:
    everything: DelayRow
    outside_outages: DelayRow
    by_phase: list[DelayRow] = field(default_factory=list)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _row(name: str, order_ids: Sequence[str], reading: PathReading) -> DelayRow:
    delays = [sent - reading.flagged[o] for o in order_ids if (sent := reading.sent_at(o)) is not None]

    return DelayRow(
        name,
        len(order_ids),
        len(delays),
        _rounded(percentile(delays, 50), 2),
        _rounded(percentile(delays, 99), 2),
        _rounded(max(delays) if delays else None, 2),
    )


def delays(
    reading: PathReading,
    phases: Sequence[tuple[str, float, float]],
    outages: Sequence[tuple[float, float]],
) -> Delays:
    """Delay from each flagged order's time (its row in `events`) to its notification's sent_at.

    `phases` are (name, start, end) in wall-clock seconds: each order is counted in the phase its
    event time falls in. `outages` are the windows a component was out of service (stopped until
    ready again): orders placed in them wait for it by design (order-alerts and the notifier's
    outbox need PostgreSQL, the Broker needs RabbitMQ), so the delay is also given without them.
    """
    ids = sorted(reading.flagged, key=lambda o: reading.flagged[o])
    inside = {o for o in ids if any(start <= reading.flagged[o] < end for start, end in outages)}
    rows = [
        _row(name, [o for o in ids if start <= reading.flagged[o] < end], reading)
        for name, start, end in phases
    ]
    return Delays(
        _row("every flagged order", ids, reading),
        _row("placed outside the outages", [o for o in ids if o not in inside], reading),
        [row for row in rows if row.orders],
    )


def check_delay(found: Delays, limit_s: float) -> list[Check]:
    """p99 below the limit for the orders whose path was up; the whole run's figures beside it."""
    outside, every = found.outside_outages, found.everything

    def figures(row: DelayRow) -> str:
        return (
            f"p50 {row.p50_s} s, p99 {row.p99_s} s, max {row.max_s} s over {row.notified} of {row.orders} "
            "flagged orders"
        )

    passed = outside.p99_s is not None and outside.p99_s < limit_s and outside.notified == outside.orders
    return [
        Check(
            f"order -> notification delay p99 under {limit_s:g} s (orders placed outside the outages)",
            PASS if passed else FAIL,
            figures(outside),
        ),
        Check(
            "order -> notification delay, every flagged order",
            INFO,
            figures(every)
            + "; orders placed while PostgreSQL or RabbitMQ was out wait for it by design (the alert and the "
            "outbox row need PostgreSQL, the Broker RabbitMQ): the per-phase table shows where the tail is",
        ),
    ]


def delay_table(found: Delays) -> str:
    rows = [found.everything, found.outside_outages, *found.by_phase]
    return markdown_table(
        ("orders placed in", "flagged", "notified", "p50 s", "p99 s", "max s"),
        [(r.name, r.orders, r.notified, r.p50_s, r.p99_s, r.max_s) for r in rows],
    )


@dataclass(frozen=True)
class MailRate:
    """How fast mails were accepted during one phase of the run."""

    phase: str
    seconds: float
    mails: int
    per_s: float
    best_10s_per_s: float  # the most mails in a 10 s window inside the phase, per second


def mail_rates(sent_at: Iterable[float], phases: Sequence[tuple[str, float, float]]) -> list[MailRate]:
    """Mails accepted per phase (by `sent_at`, wall-clock seconds) and the best 10 s of each.

    The delay table says how long orders waited; this says how fast the path drained them while
    a burst's load ran and after it stopped: whether a wait was the path's own pace or the CPU the
    rest of the stack took beside it (the store path and Flink are busy only while load arrives).
    The best window lies inside its phase (a phase shorter than 10 s: the phase itself), so a
    burst's figure is not the backlog drained in the gap after it.
    """
    times = sorted(sent_at)
    rows = []
    for name, start, end in phases:
        first, last = bisect_left(times, start), bisect_left(times, end)
        seconds = max(0.0, end - start)
        window = min(10.0, seconds)
        best = max(
            (bisect_left(times, min(times[i] + window, end)) - i for i in range(first, last)), default=0
        )
        mails = last - first
        per_s = mails / seconds if seconds else 0.0
        best_per_s = best / window if window > 0 else 0.0
        rows.append(MailRate(name, round(seconds, 1), mails, round(per_s, 1), round(best_per_s, 1)))
    return rows


def mail_rate_table(rows: Sequence[MailRate]) -> str:
    return markdown_table(
        ("phase", "s", "mails accepted", "mails/s", "best 10 s, mails/s"),
        [(r.phase, r.seconds, r.mails, r.per_s, r.best_10s_per_s) for r in rows],
    )


def check_back_to_zero(waits: Sequence[tuple[str, float, bool]]) -> Check:
    """Every gap reached zero (each function's instances gone) before the next burst."""
    name = "every function at zero before each burst"
    if not waits:
        return Check(name, INFO, "no gap waited for zero (--gap given): not checked")
    missed = [gap for gap, _, reached in waits if not reached]
    detail = ", ".join(
        f"{gap}: {waited:.0f} s{'' if reached else ' (not reached)'}" for gap, waited, reached in waits
    )
    return Check(name, FAIL if missed else PASS, detail)


# Where a flagged order's time goes, hop by hop: each stamp is a column the path writes as the
# order passes (PostgreSQL's clock, except the order's own `time`, which the client sets).
STAMPS = (
    "order placed (events.time)",
    "stored by event-store (events.received_at)",
    "alert row (order_alerts.created_at)",
    "Kafka and Broker confirmed (order_alerts.emitted_at)",
    "notifier's outbox row (notifications.recorded_at)",
    "mail accepted (notifications.sent_at)",
)
PLACED, STORED, ALERTED, EMITTED, RECORDED, SENT = range(len(STAMPS))
# (from, to): the store branch beside the alert path, then the alert path hop by hop, then the two
# spans the notifier's delay metric and the scenario's verdict measure.
HOPS = (
    (PLACED, STORED),
    (PLACED, ALERTED),
    (ALERTED, EMITTED),
    (EMITTED, RECORDED),
    (RECORDED, SENT),
    (ALERTED, SENT),
    (PLACED, SENT),
)


@dataclass(frozen=True)
class HopRow:
    """One hop's time over the flagged orders that passed both its stamps."""

    hop: str
    orders: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


def hop_rows(stamps: Iterable[Sequence[float | None]]) -> list[HopRow]:
    """p50/p99/max of every hop in HOPS; `stamps` holds one tuple per flagged order, in STAMPS order
    (None where the order never reached that stamp)."""
    orders = list(stamps)
    rows = []
    for start, end in HOPS:
        spans = [s[end] - s[start] for s in orders if s[start] is not None and s[end] is not None]

        name = f"{STAMPS[start].split(' (')[0]} -> {STAMPS[end].split(' (')[0]}"
        rows.append(
            HopRow(
                name,
                len(spans),
                _rounded(percentile(spans, 50), 3),
                _rounded(percentile(spans, 99), 3),
                _rounded(max(spans) if spans else None, 3),
            )
        )
    return rows


def hop_table(rows: Sequence[HopRow]) -> str:
    return markdown_table(
        ("hop", "orders", "p50 s", "p99 s", "max s"),
        [(r.hop, r.orders, r.p50_s, r.p99_s, r.max_s) for r in rows],
    )


# After an outage, when each hop caught up: the stamps past the order's own time, read as seconds
# after the component was back. The orders placed during the outage are its backlog; those placed
# after it wait behind that backlog in each queue (Kafka in front of order-alerts, the Broker's
# queue in front of the notifier), which is where the bursts' delay tail comes from.
RECOVERY_STAMPS = (STORED, ALERTED, EMITTED, RECORDED, SENT)
RECOVERY_AFTER_S = 20.0  # how long after the return the orders are followed
RECOVERY_STEP_S = 5.0  # in windows of this many seconds


@dataclass(frozen=True)
class RecoveryRow:
    """Flagged orders placed in one window around an outage's end, and when their stamps came."""

    outage: str
    placed: str  # "during" or "+0-5 s" (seconds after the component was back)
    orders: int
    # Median of each RECOVERY_STAMPS stamp, in seconds after the component was back.
    medians: tuple[float | None, ...]
    delay_p99_s: float | None  # order placed -> mail accepted


def recovery_rows(
    stamps: Iterable[Sequence[float | None]],
    outages: Sequence[tuple[str, float, float]],
    after_s: float = RECOVERY_AFTER_S,
    step_s: float = RECOVERY_STEP_S,
) -> list[RecoveryRow]:
    """For each outage (label, start, back): the orders placed during it, then those placed in each
    `step_s` of the `after_s` after it was back; each stamp's median relative to `back`."""
    orders = [s for s in stamps if s[PLACED] is not None]
    rows: list[RecoveryRow] = []

    def row(label: str, placed: str, back: float, group: list[Sequence[float | None]]) -> RecoveryRow:
        def median_after(index: int) -> float | None:
            return _rounded(percentile([s[index] - back for s in group if s[index] is not None], 50), 1)

        delays = [s[SENT] - s[PLACED] for s in group if s[SENT] is not None]
        return RecoveryRow(
            label,
            placed,
            len(group),
            tuple(median_after(i) for i in RECOVERY_STAMPS),
            _rounded(percentile(delays, 99), 1),
        )

    for label, start, back in outages:
        during = [s for s in orders if start <= s[PLACED] < back]
        if during:
            rows.append(row(label, "during", back, during))
        low = 0.0
        while low < after_s:
            high = min(low + step_s, after_s)
            group = [s for s in orders if back + low <= s[PLACED] < back + high]
            if group:
                rows.append(row(label, f"+{low:g}-{high:g} s", back, group))
            low = high
    return rows


def recovery_table(rows: Sequence[RecoveryRow]) -> str:
    stamp_names = [STAMPS[i].split(" (")[0] for i in RECOVERY_STAMPS]
    return markdown_table(
        ("outage", "orders placed", "orders", *stamp_names, "order -> mail p99 s"),
        [(r.outage, r.placed, r.orders, *r.medians, r.delay_p99_s) for r in rows],
    )
