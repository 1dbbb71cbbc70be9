"""Pure numbers of a scenario run: percentiles, the per-second timeline, phase tables, verdicts.

No I/O here, so every rule the report applies is unit-tested (loadtest/tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from decimal import Decimal
from typing import Any

from loadtest.measure import percentile

ACCEPTED, RATE_LIMITED, UNAVAILABLE = 202, 429, 503


@dataclass(frozen=True)
class Outcome:
    """One HTTP request of the load driver."""

    start: float  # wall-clock seconds (time.time()) when it was sent
    latency_s: float
    status: int  # HTTP status; 0 = no answer (connection refused, reset, client timeout)
    events: int  # events in the request
    attempt: int = 1  # 2, 3, ...: the same events sent again after a 429/503/no answer
    retry_after: float | None = None


@dataclass(frozen=True)
class Sample:
    """One reading of a probe: lag, stored rows, Flink's state. Missing values are None."""

    t: float
    values: dict[str, float | str | None]


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # wall-clock seconds
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def status_class(status: int) -> str:
    if status == ACCEPTED:
        return "accepted"
    if status == RATE_LIMITED:
        return "rejected_429"
    if status == UNAVAILABLE:
        return "unavailable_503"
    return "error"  # no answer, other 5xx, 4xx: none is expected from a well-formed load


TIMELINE_COLUMNS = (
    "second",
    "requests",
    "accepted",
    "accepted_events",
    "rejected_429",
    "unavailable_503",
    "error",
    "p50_ms",
    "p99_ms",
)


@dataclass
class Second:
    """One row of the timeline: requests *sent* in that second, and the probes' last readings."""

    second: int
    requests: int = 0
    accepted: int = 0
    accepted_events: int = 0
    rejected_429: int = 0
    unavailable_503: int = 0
    error: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    probes: dict[str, float | str | None] = field(default_factory=dict)

    def as_row(self, probe_names: Sequence[str]) -> list[object]:
        row: list[object] = [getattr(self, column) for column in TIMELINE_COLUMNS]
        row.extend(self.probes.get(name) for name in probe_names)
        return row


def timeline(outcomes: Iterable[Outcome], samples: Iterable[Sample], t0: float, t_end: float) -> list[Second]:
    """Per-second rows from t0 to t_end; a probe's value is its last reading in that second."""
    count = max(1, math.ceil(t_end - t0))
    rows = [Second(second=i) for i in range(count)]
    latencies: list[list[float]] = [[] for _ in rows]
    for outcome in outcomes:
        index = int(outcome.start - t0)
        if not 0 <= index < count:
            continue
        row = rows[index]
        row.requests += 1
        kind = status_class(outcome.status)
        setattr(row, kind, getattr(row, kind) + 1)
        if kind == "accepted":
            row.accepted_events += outcome.events
        latencies[index].append(outcome.latency_s * 1000)
    for row, values in zip(rows, latencies, strict=True):
        row.p50_ms = _round(percentile(values, 50))
        row.p99_ms = _round(percentile(values, 99))
    for sample in sorted(samples, key=lambda s: s.t):
        index = int(sample.t - t0)
        if 0 <= index < count:
            for name, value in sample.values.items():
                if value is not None:
                    rows[index].probes[name] = value
    return rows


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class PhaseSummary:
    phase: str
    seconds: float
    requests: int
    req_per_s: float
    accepted: int
    accepted_events: int
    rejected_429: int
    unavailable_503: int
    error: int
    p50_ms: float | None
    p99_ms: float | None
    accepted_p99_ms: float | None
    rejected_p99_ms: float | None
    max_lag_store: float | None
    max_lag_flink: float | None
    no_answer: int = 0  # of `error`: no HTTP answer at all (timeout, connection refused or reset)


def summarize(phase: Phase, outcomes: Iterable[Outcome], samples: Iterable[Sample]) -> PhaseSummary:
    chosen = [o for o in outcomes if phase.start <= o.start < phase.end]
    by_kind: dict[str, list[Outcome]] = {}
    for outcome in chosen:
        by_kind.setdefault(status_class(outcome.status), []).append(outcome)

    def ms(items: list[Outcome], q: float) -> float | None:
        return _round(percentile([o.latency_s * 1000 for o in items], q))

    readings = [s for s in samples if phase.start <= s.t < phase.end]
    accepted = by_kind.get("accepted", [])
    return PhaseSummary(
        phase=phase.name,
        seconds=round(phase.duration, 1),
        requests=len(chosen),
        req_per_s=round(len(chosen) / phase.duration, 1) if phase.duration else 0.0,
        accepted=len(accepted),
        accepted_events=sum(o.events for o in accepted),
        rejected_429=len(by_kind.get("rejected_429", [])),
        unavailable_503=len(by_kind.get("unavailable_503", [])),
        error=len(by_kind.get("error", [])),
        p50_ms=ms(chosen, 50),
        p99_ms=ms(chosen, 99),
        accepted_p99_ms=ms(accepted, 99),
        rejected_p99_ms=ms(by_kind.get("rejected_429", []), 99),
        max_lag_store=_max_probe(readings, "lag_event_store"),
        max_lag_flink=_max_probe(readings, "lag_flink"),
        no_answer=sum(1 for o in chosen if o.status == 0),
    )


def _max_probe(samples: Iterable[Sample], name: str) -> float | None:
    values = [s.values[name] for s in samples if isinstance(s.values.get(name), int | float)]
    return max(values) if values else None  # type: ignore[type-var]


PHASE_HEADERS = (
    "phase",
    "s",
    "requests",
    "req/s",
    "202",
    "events 202",
    "429",
    "503",
    "errors",
    "p50 ms",
    "p99 ms",
    "p99 202 ms",
    "p99 429 ms",
    "max lag store",
    "max lag flink",
)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


def reasons_table(reasons: dict[tuple[int, str], int]) -> str:
    """Answers other than 202, by status and problem type (0 = no HTTP answer, with the error)."""
    rows = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return markdown_table(("status", "reason", "count"), [(status, why, n) for (status, why), n in rows])


def phase_table(summaries: Iterable[PhaseSummary]) -> str:
    return markdown_table(
        PHASE_HEADERS,
        (
            (
                s.phase,
                s.seconds,
                s.requests,
                s.req_per_s,
                s.accepted,
                s.accepted_events,
                s.rejected_429,
                s.unavailable_503,
                s.error,
                s.p50_ms,
                s.p99_ms,
                s.accepted_p99_ms,
                s.rejected_p99_ms,
                s.max_lag_store,
                s.max_lag_flink,
            )
            for s in summaries
        ),
    )


# --- verdicts ---------------------------------------------------------------------------------

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # PASS, FAIL, SKIP or INFO
    detail: str

    def line(self) -> str:
        return f"- **{self.result}** {self.name}: {self.detail}"


def check_stored_once(
    accepted: set[str], sent: set[str], stored: set[str], stored_rows: int, dead_lettered: int = 0
) -> list[Check]:
    """Every event answered 202 is in `events`, exactly once; nothing there that was never sent.

    Events whose request got a 503, a 429 or no answer may or may not have reached Kafka: they
    are allowed in the table (counted as "stored without a 202") but never required.
    """
    if not accepted:
        return [Check("every 202 event stored", SKIP, "no event was answered 202: nothing to check")]
    missing = accepted - stored
    unknown = stored - sent
    unacknowledged = (stored & sent) - accepted
    detail = (
        f"202-answered events {len(accepted)}, stored {len(stored & accepted)}, missing {len(missing)}"
        f"; stored without a 202 (503/no answer, then written) {len(unacknowledged)}"
    )
    if missing and dead_lettered:
        detail += f"; {dead_lettered} of this run's events are in dead_letters (replayable)"
    checks = [Check("every 202 event stored", FAIL if missing else PASS, detail)]
    checks.append(
        Check(
            "nothing stored that was never sent",
            FAIL if unknown else PASS,
            f"{len(unknown)} unknown ids under this run's source",
        )
    )
    duplicates = stored_rows - len(stored)
    checks.append(
        Check(
            "stored exactly once",
            FAIL if duplicates else PASS,
            f"{stored_rows} rows for {len(stored)} distinct ids (duplicates {duplicates})",
        )
    )
    return checks


@dataclass(frozen=True)
class SalesTotals:
    """Sums over this run's products: what Flink wrote, or what the stored orders say."""

    quantity: int
    order_lines: int
    revenue: Decimal

    def within(self, lower: SalesTotals, upper: SalesTotals) -> bool:
        return all(
            low <= value <= high
            for low, value, high in zip(astuple(lower), astuple(self), astuple(upper), strict=True)
        )

    def __str__(self) -> str:
        return f"quantity {self.quantity}, order lines {self.order_lines}, revenue {self.revenue}"


def sales_of(orders: Iterable[Mapping[str, Any]]) -> SalesTotals:
    """Sums over order events' data, as Flink's agg_product_sales computes them."""
    quantity = lines = 0
    revenue = Decimal(0)
    for order in orders:
        for item in order["items"]:
            quantity += item["quantity"]
            lines += 1
            revenue += Decimal(str(item["unitPrice"])) * item["quantity"]
    return SalesTotals(quantity, lines, revenue.quantize(Decimal("0.01")))


def check_flink(
    expected: SalesTotals | None,
    actual: SalesTotals | None,
    job_state: str | None,
    waited_s: float,
    was_running: bool = False,
    store_complete: bool = True,
    bounds: tuple[SalesTotals, SalesTotals] | None = None,
) -> Check:
    """agg_product_sales of this run's products equals the sums over its stored orders.

    Equal means every order counted once: a replay after a restart that counted twice shows as
    a larger actual, a lost one as a smaller one. While the event-store has not stored every
    accepted event the stored orders are no reference; then the client's own record bounds it:
    at least the orders answered 202, at most every order sent.
    """
    name = "Flink aggregates exactly once"
    if job_state is None:
        if was_running:
            return Check(
                name, FAIL, f"the flink job ran before the drill and is not running {waited_s:.0f} s after it"
            )
        return Check(name, SKIP, "skipped: flink job not running")
    if actual is not None and not store_complete and bounds is not None:
        lower, upper = bounds
        detail = (
            f"the store is incomplete, so bounds from the client: agg_product_sales has {actual}; "
            f"orders answered 202: {lower}; all orders sent: {upper} "
            f"(job {job_state}, waited {waited_s:.0f} s)"
        )
        return Check(name, PASS if actual.within(lower, upper) else FAIL, detail)
    if expected is None or actual is None:
        return Check(name, SKIP, "skipped: PostgreSQL not readable")
    detail = (
        f"expected (from stored orders) quantity {expected.quantity}, order lines {expected.order_lines}, "
        f"revenue {expected.revenue}; agg_product_sales has {actual.quantity}, {actual.order_lines}, "
        f"{actual.revenue} (job {job_state}, waited {waited_s:.0f} s)"
    )
    return Check(name, PASS if actual == expected else FAIL, detail)


def check_recovered(after: PhaseSummary | None, what: str) -> Check:
    """After the component is back, requests are accepted again."""
    name = f"accepting again after {what}"
    answered = 0 if after is None else after.requests - after.rejected_429
    if after is None or answered == 0:
        return Check(name, SKIP, "no requests after the failure")
    share = after.accepted / answered
    return Check(
        name,
        PASS if after.accepted > 0 and share >= 0.9 else FAIL,
        f"{after.accepted}/{answered} requests not rate-limited answered 202 after the restart ({share:.0%})",
    )


def check_kept_accepting(during: PhaseSummary, what: str, minimum_share: float = 0.95) -> Check:
    """The gateway does not depend on what failed: it keeps answering 202."""
    name = f"gateway kept accepting while {what}"
    # nginx's 429s are the edge's limit, not the failure: they do not count either way.
    answered = during.requests - during.rejected_429
    if answered == 0:
        return Check(name, SKIP, "no requests during the failure")
    share = during.accepted / answered
    return Check(
        name,
        PASS if share >= minimum_share else FAIL,
        f"{during.accepted}/{answered} requests not rate-limited answered 202 "
        f"({share:.0%}, at least {minimum_share:.0%} required)",
    )


def check_fast_unavailable(
    during: PhaseSummary, unavailable_latencies_s: Sequence[float], limit_s: float
) -> list[Check]:
    """Kafka down: 503 instead of 202, and soon (the producer's delivery timeout, not a hang)."""
    checks = []
    p99 = percentile(unavailable_latencies_s, 99)
    if not unavailable_latencies_s:
        checks.append(Check("503 while Kafka is down", FAIL, "no 503 answer during the failure"))
    else:
        checks.append(
            Check(
                "503 while Kafka is down",
                PASS,
                f"{during.unavailable_503} answers 503, {during.error} without answer, "
                f"{during.accepted} answered 202 (each checked in the store)",
            )
        )
        checks.append(
            Check(
                "503 answered fast",
                PASS if p99 is not None and p99 <= limit_s else FAIL,
                f"p99 {p99 * 1000:.0f} ms (limit {limit_s * 1000:.0f} ms)" if p99 is not None else "",
            )
        )
    hung = during.no_answer
    checks.append(
        Check(
            "no request left without an answer",
            PASS if hung == 0 else FAIL,
            f"{hung} requests got no HTTP answer (timeout or connection error); "
            f"{during.error - hung} other errors",
        )
    )
    return checks


def check_overload(
    calm: PhaseSummary | None,
    overload: PhaseSummary,
    rejected_latencies_s: Sequence[float],
    missing_retry_after: int,
    rejected_p50_limit_s: float = 0.025,
    rejected_p99_limit_s: float = 0.25,
    admitted_slowdown: float = 3.0,
) -> list[Check]:
    """Above the limits: excess gets a fast 429 with Retry-After, admitted requests stay normal.

    The 429 limits are client-side times of a Python driver on a shared 2-core machine: its own
    thread scheduling is in them (nginx's own cost of a 429 is microseconds: make bench-edge).
    """
    checks = []
    p50_rejected = percentile(rejected_latencies_s, 50)
    p99_rejected = percentile(rejected_latencies_s, 99)
    if overload.rejected_429 == 0:
        checks.append(Check("excess answered 429", FAIL, "no 429 during the overload: limits not reached"))
    else:
        checks.append(
            Check(
                "excess answered 429",
                PASS,
                f"{overload.rejected_429} of {overload.requests} requests rejected, "
                f"{overload.accepted} admitted",
            )
        )
        checks.append(
            Check(
                "429 is fast",
                PASS
                if p50_rejected is not None
                and p99_rejected is not None
                and p50_rejected <= rejected_p50_limit_s
                and p99_rejected <= rejected_p99_limit_s
                else FAIL,
                f"p50 {p50_rejected * 1000:.1f} ms, p99 {p99_rejected * 1000:.1f} ms "
                f"(limits {rejected_p50_limit_s * 1000:.0f} / {rejected_p99_limit_s * 1000:.0f} ms)"
                if p50_rejected is not None and p99_rejected is not None
                else "",
            )
        )
        checks.append(
            Check(
                "429 carries Retry-After",
                PASS if missing_retry_after == 0 else FAIL,
                f"{missing_retry_after} 429 answers without a Retry-After header",
            )
        )
    failures = overload.unavailable_503 + overload.error
    checks.append(
        Check(
            "no errors under overload",
            PASS if failures == 0 else FAIL,
            f"{overload.unavailable_503} answers 503, {overload.error} other errors or no answer",
        )
    )
    if calm is not None and calm.accepted_p99_ms is not None and overload.accepted_p99_ms is not None:
        # The shared 2-core machine is noisy: allow a factor and a floor, not a tight bound.
        bound = max(calm.accepted_p99_ms * admitted_slowdown, calm.accepted_p99_ms + 250)
        checks.append(
            Check(
                "admitted requests served normally",
                PASS if overload.accepted_p99_ms <= bound else FAIL,
                f"p99 of 202s {overload.accepted_p99_ms:g} ms under overload "
                f"vs {calm.accepted_p99_ms:g} ms calm "
                f"(bound {bound:.0f} ms)",
            )
        )
    return checks


INCONCLUSIVE = "INCONCLUSIVE"
# The checks a backlog left by other load can fail without anything being lost (yet).
WAITING_CHECKS = ("every 202 event stored", "backlog drained after the load stopped")


def verdict(checks: Iterable[Check], backlog_left: bool = False) -> str:
    """FAIL on any failed check; INCONCLUSIVE when only the store lags behind a backlog."""
    failed = {c.name for c in checks if c.result == FAIL}
    if not failed:
        return PASS
    if backlog_left and failed <= set(WAITING_CHECKS):
        return INCONCLUSIVE
    return FAIL
