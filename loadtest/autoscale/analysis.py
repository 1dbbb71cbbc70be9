"""Pure numbers of the autoscale demo: instance series, settling times, cold starts, latency.

No I/O here, so every rule the report applies is unit-tested (loadtest/tests/test_autoscale_analysis.py).
An instance series is a list of (wall-clock seconds, ready instances) readings of one function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from loadtest.scenarios.stats import (
    FAIL,
    INFO,
    PASS,
    SKIP,
    Check,
    Phase,
    PhaseSummary,
    markdown_table,
    percentile,
)

Series = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class ColdStart:
    """One instance start: locally as the activator logs it (cold-starts.jsonl), on a cluster a pod."""

    function: str
    started_at: float  # wall-clock seconds
    ready_s: float | None  # exec (the function's process started) -> ready; None: never ready
    first_request_wait_s: float | None  # wait of the request that caused it; None: no request waited
    reason: str = ""  # request (a held request), scale-out (the autoscaler), initial (activator start)
    pod_ready_s: float | None = None  # a cluster's pod: created -> Ready (image, sandbox, exec, probe)


@dataclass(frozen=True)
class MemorySample:
    """Resident memory of one instance at one moment: VmRSS summed over its processes (MiB)."""

    t: float  # wall-clock seconds
    function: str
    instance: str  # the local instance's name, or the pod's
    rss_mib: float


@dataclass(frozen=True)
class MemoryFigures:
    """One function's instances over a run (MiB): each instance's first reading (p50 over the
    instances), the highest reading, and the median of the readings taken while nothing was left
    to do (after the drain: every accepted event stored)."""

    instances: int
    first_p50: float | None
    peak: float | None
    idle_p50: float | None
    idle_samples: int


# Issue 22's goal for one function instance: idle RSS under this.
MEMORY_GOAL_MIB = 80.0


def memory_figures(samples: Iterable[MemorySample], idle_from: float) -> dict[str, MemoryFigures]:
    """Per function: instances seen, first reading p50, peak, idle median (readings at or after
    `idle_from`, wall clock)."""
    by_function: dict[str, list[MemorySample]] = {}
    for sample in sorted(samples, key=lambda s: s.t):
        by_function.setdefault(sample.function, []).append(sample)
    figures = {}
    for function, items in sorted(by_function.items()):
        first: dict[str, float] = {}
        for sample in items:
            first.setdefault(sample.instance, sample.rss_mib)
        idle = [s.rss_mib for s in items if s.t >= idle_from]
        figures[function] = MemoryFigures(
            instances=len(first),
            first_p50=_round1(percentile(list(first.values()), 50)),
            peak=_round1(max(s.rss_mib for s in items)),
            idle_p50=_round1(percentile(idle, 50)),
            idle_samples=len(idle),
        )
    return figures


def memory_goal(figures: MemoryFigures) -> str:
    """Judged on the idle median; without idle readings on the first readings (an instance gone
    before the drain ended)."""
    value = figures.idle_p50 if figures.idle_p50 is not None else figures.first_p50
    if value is None:
        return "-"
    return "met" if value < MEMORY_GOAL_MIB else "NOT met"


def memory_table(figures: Mapping[str, MemoryFigures]) -> str:
    if not figures:
        return "_no instance memory was read_"
    rows = [
        [
            function,
            item.instances,
            item.first_p50,
            item.peak,
            item.idle_p50 if item.idle_p50 is not None else "-",
            item.idle_samples,
            memory_goal(item),
        ]
        for function, item in sorted(figures.items())
    ]
    headers = [
        "function",
        "instances",
        "RSS first reading p50 MiB",
        "RSS peak MiB",
        "RSS idle p50 MiB",
        "idle readings",
        f"goal idle < {MEMORY_GOAL_MIB:.0f} MiB",
    ]
    return markdown_table(headers, rows)


def _round1(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def peak(series: Series, phase: Phase) -> float | None:
    values = [value for t, value in series if phase.start <= t < phase.end]
    return max(values) if values else None


def value_at_end(series: Series, phase: Phase) -> float | None:
    values = [value for t, value in series if phase.start <= t < phase.end]
    return values[-1] if values else None


def settle_s(series: Series, phase: Phase) -> float | None:
    """Seconds from the phase's start to the last change of the instance count within it.

    "How fast the load is followed": after the last change the count stays put until the phase
    ends. None when the count never changed (already right, or no readings).
    """
    readings = [(t, value) for t, value in series if phase.start <= t < phase.end]
    if not readings:
        return None
    previous = _last_before(series, phase.start)
    last_change: float | None = None
    for t, value in readings:
        if previous is not None and value != previous:
            last_change = t
        previous = value
    return None if last_change is None else round(last_change - phase.start, 1)


def _last_before(series: Series, t: float) -> float | None:
    earlier = [value for when, value in series if when < t]
    return earlier[-1] if earlier else None


def first_zero_after(series: Series, t: float) -> float | None:
    """Seconds after t until the function is at zero ready instances (None: it never got there)."""
    for when, value in series:
        if when >= t and value == 0:
            return round(when - t, 1)
    return None


def instances_table(series: Mapping[str, Series], phases: Sequence[Phase]) -> str:
    headers = [
        "function",
        *(f"peak in {p.name}" for p in phases),
        *(f"settled in {p.name} (s)" for p in phases),
    ]
    rows = []
    for function, readings in sorted(series.items()):
        rows.append(
            [
                function,
                *(_int(peak(readings, phase)) for phase in phases),
                *(settle_s(readings, phase) for phase in phases),
            ]
        )
    return markdown_table(headers, rows)


def cold_start_table(starts: Iterable[ColdStart], t0: float) -> str:
    rows = [
        [
            start.function,
            start.reason or "-",
            round(start.started_at - t0, 1),
            _ms(start.ready_s),
            _ms(start.pod_ready_s),
            _ms(start.first_request_wait_s),
        ]
        for start in sorted(starts, key=lambda s: s.started_at)
    ]
    if not rows:
        return "_no instance was started during the run_"
    headers = [
        "function",
        "why",
        "at s",
        "exec -> ready ms",
        "pod created -> Ready ms",
        "first request waited ms",
    ]
    return markdown_table(headers, rows)


def cold_start_summary(starts: Iterable[ColdStart]) -> str:
    by_function: dict[str, list[ColdStart]] = {}
    for start in starts:
        by_function.setdefault(start.function, []).append(start)
    rows = []
    for function, items in sorted(by_function.items()):
        ready = [s.ready_s for s in items if s.ready_s is not None]
        pods = [s.pod_ready_s for s in items if s.pod_ready_s is not None]
        waits = [s.first_request_wait_s for s in items if s.first_request_wait_s is not None]
        rows.append(
            [
                function,
                len(items),
                _ms(percentile(ready, 50)),
                _ms(max(ready) if ready else None),
                _ms(percentile(pods, 50)),
                len(waits),
                _ms(percentile(waits, 50)),
                _ms(max(waits) if waits else None),
                _goal(percentile(waits, 50) if waits else percentile(ready, 50)),
            ]
        )
    if not rows:
        return "_no cold starts_"
    headers = [
        "function",
        "starts",
        "exec -> ready p50 ms",
        "exec -> ready max ms",
        "pod created -> Ready p50 ms",
        "requests held",
        "first request wait p50 ms",
        "wait max ms",
        f"goal: first request < {COLD_START_GOAL_S * 1000:.0f} ms",
    ]
    return markdown_table(headers, rows)


# Issue 22's goal for a function at zero: its first request waits less than this (p50; the ready
# p50 where no request waited).
COLD_START_GOAL_S = 0.5


def _goal(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "met" if seconds < COLD_START_GOAL_S else "NOT met"


def check_step_admitted(step: PhaseSummary, most_refused: float = 0.01) -> Check:
    """The step is the load the run measures: if the edge refused a share of it (429), the figures
    are nginx's limit, not the path's (a 36 req/s step as one client: 20 r/s admitted)."""
    name = "the step's load was admitted by the edge"
    if step.requests == 0:
        return Check(name, SKIP, "no requests in the step")
    share = step.rejected_429 / step.requests
    return Check(
        name,
        PASS if share <= most_refused else FAIL,
        f"{step.rejected_429} of {step.requests} requests refused with 429 ({share:.1%}, at most "
        f"{most_refused:.0%}); {step.accepted_events} events accepted in {step.seconds:.0f} s",
    )


def latency_summary(delays_s: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) of event -> stored row delays."""
    return _ms(percentile(delays_s, 50)), _ms(percentile(delays_s, 99))


def delay_by_minute(delays: Sequence[tuple[float, float]], minute_s: float = 60.0) -> str:
    """Event -> stored row p50/p99 (ms) per minute of the load, by the event's own time.

    `delays` are (stored at, delay) in seconds, as the report reads them. One p99 over a whole run
    hides when the time went: on a fresh stack the first minute pays the cold starts and the JVMs'
    (Kafka's, Flink's) warm-up, and this table shows that minute apart from the rest.
    """
    if not delays:
        return "no stored events"
    sent = [(stored_at - delay, delay) for stored_at, delay in delays]
    origin = min(t for t, _ in sent)
    minutes: dict[int, list[float]] = {}
    for t, delay in sent:
        minutes.setdefault(int((t - origin) // minute_s), []).append(delay)
    rows = [
        (
            f"{m * minute_s:g}-{(m + 1) * minute_s:g} s",
            len(values),
            _ms(percentile(values, 50)),
            _ms(percentile(values, 99)),
            _ms(max(values)),
        )
        for m, values in sorted(minutes.items())
    ]
    return markdown_table(("events sent in", "events", "p50 ms", "p99 ms", "max ms"), rows)


def check_scaled(series: Mapping[str, Series], busy: Phase, functions: Sequence[str]) -> list[Check]:
    """Each named function had at least one instance while the load ran."""
    checks = []
    for function in functions:
        top = peak(series.get(function, ()), busy)
        if top is None:
            checks.append(Check(f"{function} scaled up under load", SKIP, "no instance readings"))
        else:
            result = PASS if top >= 1 else FAIL
            checks.append(
                Check(f"{function} scaled up under load", result, f"peak {int(top)} ready instances")
            )
    return checks


def check_back_to_zero(series: Mapping[str, Series], after: float, functions: Sequence[str]) -> list[Check]:
    checks = []
    for function in functions:
        seconds = first_zero_after(series.get(function, ()), after)
        if seconds is None:
            checks.append(Check(f"{function} back at zero", FAIL, "still had instances when the demo ended"))
        else:
            checks.append(Check(f"{function} back at zero", PASS, f"{seconds} s after the load stopped"))
    return checks


def check_cold_starts_ready(starts: Iterable[ColdStart]) -> Check:
    failed = [s for s in starts if s.ready_s is None]
    if failed:
        names = ", ".join(sorted({s.function for s in failed}))
        return Check("every started instance became ready", FAIL, f"{len(failed)} did not: {names}")
    return Check("every started instance became ready", PASS, "all did")


def info(name: str, detail: str) -> Check:
    return Check(name, INFO, detail)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram {upper bound: count}, as Prometheus's
    histogram_quantile interpolates it (linearly inside the bucket; the +Inf bucket answers its
    lower bound). None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_increase(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float]:
    """Cumulative buckets observed between two scrapes (a counter reset counts from zero)."""
    increase = {}
    for bound, count in after.items():
        previous = before.get(bound, 0.0)
        increase[bound] = count - previous if count >= previous else count
    return increase


def within_one_share(
    standin: Series, knative: Series, start: float, end: float, tick_s: float = 5.0
) -> tuple[float | None, int]:
    """Share of ticks in [start, end) (seconds from each run's own t0) at which the stand-in's
    desired instances are within ±1 of Knative's, each series read as a step function at the tick;
    and how many ticks both had a value for."""
    ticks = 0
    close = 0
    t = start
    while t < end:
        a, b = step_value(standin, t), step_value(knative, t)
        if a is not None and b is not None:
            ticks += 1
            close += abs(a - b) <= 1
        t += tick_s
    return (close / ticks if ticks else None), ticks


def step_value(series: Series, t: float) -> float | None:
    """The last reading at or before t (None before the first)."""
    value = None
    for when, reading in series:
        if when > t:
            break
        value = reading
    return value


def episodes(series: Series, threshold: float = 1.0) -> list[tuple[float, float]]:
    """(start, end) of each stretch where the series is >= threshold (e.g. panic mode 1)."""
    found: list[tuple[float, float]] = []
    start: float | None = None
    last_t = None
    for t, value in series:
        if value >= threshold and start is None:
            start = t
        elif value < threshold and start is not None:
            found.append((start, t))
            start = None
        last_t = t
    if start is not None and last_t is not None:
        found.append((start, last_t))
    return found
