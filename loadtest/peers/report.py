"""The markdown report of `make bench-peers`: one comparison table with ratios and goals, details.

Pure formatting of what __main__ measured, so it can be read (and tested) without a stack. The
goals are issue 13's: gateway single events >= 1,500 req/s and >= 0.4x Knative's receiver;
batches >= 15,000 events/s and >= 1.0x the Strimzi bridge; ripple's dispatcher unordered >= 0.5x
Knative's; ordered no slower than the ~1,000 events/s measured before the work on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Measurement:
    key: str  # gateway-single, knative-single, bridge-single, gateway-batch, bridge-batch, ...
    what: str
    rate: float  # requests/s (ingress), delivery events/s (dispatch), records/s (producer)
    events_per_s: float  # events accepted per second (ingress); start->done events/s (dispatch)
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    cpu_ms_per_event: float | None
    load: str  # load average when the measurement ended
    extra: str = ""
    disturbed: bool = False  # the shared Kafka restarted during the measurement

    def summary(self) -> str:
        parts = [f"{self.rate:,.0f}/s", f"{self.events_per_s:,.0f} events/s"]
        if self.p50_ms is not None:
            parts.append(f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms")
        if self.cpu_ms_per_event is not None:
            parts.append(f"{self.cpu_ms_per_event:.3f} CPU ms/event")
        parts.append(f"errors {self.errors}")
        return ", ".join(parts)


def _num(value: float) -> str:
    return f"{value:,.0f}"


def _cell(m: Measurement | None, field: str) -> str:
    if m is None:
        return "not measured"
    if field == "req":
        text = f"{_num(m.rate)} req/s"
    else:
        text = f"{_num(m.events_per_s if field == 'events' else m.rate)} events/s"
    extras = []
    if m.p50_ms is not None and field != "events-only":
        extras.append(f"p50 {m.p50_ms:.0f} ms, p99 {m.p99_ms:.0f} ms")
    if m.cpu_ms_per_event is not None:
        extras.append(f"{m.cpu_ms_per_event:.2f} CPU ms/event")
    if m.errors:
        extras.append(f"{m.errors} errors")
    if m.disturbed:
        extras.append("Kafka restarted during the run")
    return f"{text} ({'; '.join(extras)})" if extras else text


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "—"
    return f"{ours / theirs:.2f}x"


def _met(condition: bool | None) -> str:
    return "—" if condition is None else ("**yes**" if condition else "no")


def comparison(results: list[Measurement]) -> list[str]:
    """The headline table: ripple vs the peer measured in the same run, ratio, goal."""
    by = {m.key: m for m in results}
    g1, k1, b1 = by.get("gateway-single"), by.get("knative-single"), by.get("bridge-single")
    gb, bb = by.get("gateway-batch"), by.get("bridge-batch")
    ru, ku = by.get("ripple-unordered"), by.get("knative-unordered")
    ro, ko = by.get("ripple-ordered"), by.get("knative-ordered")
    kp = by.get("kafka-producer")
    rows = [
        "| path | ripple | peer, same run | ripple / peer | goal | met |",
        "|---|---|---|---|---|---|",
    ]

    def rate(m: Measurement | None) -> float | None:
        return m.rate if m else None

    def events(m: Measurement | None) -> float | None:
        return m.events_per_s if m else None

    def both(
        ours: Measurement | None, theirs: Measurement | None, absolute: float, ratio: float, key
    ) -> bool | None:
        if ours is None or theirs is None or not key(theirs):
            return None
        return key(ours) >= absolute and key(ours) / key(theirs) >= ratio

    batch = gb.what.rsplit(" ", 1)[-1] if gb else "100"
    best = max(events(gb) or 0, events(g1) or 0)
    rows += [
        f"| single events (wrk) vs **Knative Kafka broker receiver** | {_cell(g1, 'req')} | "
        f"{_cell(k1, 'req')} | "
        f"{_ratio(rate(g1), rate(k1))} | ≥ 1,500 req/s and ≥ 0.4x | {_met(both(g1, k1, 1500, 0.4, rate))} |",
        f"| single events (wrk) vs **Strimzi bridge**, 1 record/request, keep-alive | {_cell(g1, 'req')} | "
        f"{_cell(b1, 'req')} | {_ratio(rate(g1), rate(b1))} | — | — |",
        f"| batches of {batch} vs **Strimzi bridge**, {batch} records/request | {_cell(gb, 'events')} | "
        f"{_cell(bb, 'events')} | {_ratio(events(gb), events(bb))} | ≥ 15,000 events/s and ≥ 1.0x | "
        f"{_met(both(gb, bb, 15000, 1.0, events))} |",
        f"| dispatch → nginx `return 202`, unordered, vs **Knative dispatcher** | {_cell(ru, 'rate')} | "
        f"{_cell(ku, 'rate')} | {_ratio(rate(ru), rate(ku))} | ≥ 0.5x | {_met(both(ru, ku, 0, 0.5, rate))} |",
        f"| dispatch → nginx `return 202`, ordered, vs **Knative dispatcher** | {_cell(ro, 'rate')} | "
        f"{_cell(ko, 'rate')} | {_ratio(rate(ro), rate(ko))} | no slower than before (~1,000 events/s) | "
        f"{_met(None if ro is None else ro.rate >= 1000)} |",
        f"| Kafka's producer ceiling (ProducerPerformance, acks=all) | "
        f"{f'ripple best ingress: {_num(best)} events/s' if best else 'not measured'} | "
        f"{_cell(kp, 'rate')} | {_ratio(best, rate(kp))} | — | — |",
    ]
    return rows


def details(results: list[Measurement]) -> list[str]:
    rows = [
        "| measurement | req/s or deliveries/s | events/s | p50 ms | p99 ms | errors | CPU ms/event | "
        "load avg after | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        p50 = "—" if m.p50_ms is None else f"{m.p50_ms:.1f}"
        p99 = "—" if m.p99_ms is None else f"{m.p99_ms:.1f}"
        cpu = "—" if m.cpu_ms_per_event is None else f"{m.cpu_ms_per_event:.3f}"
        rows.append(
            f"| {m.what} | {_num(m.rate)} | {_num(m.events_per_s)} | {p50} | {p99} | {m.errors} | {cpu} | "
            f"{m.load} | {m.extra} |"
        )
    return rows


def render(bench, built, config, load_start: str, load_end: str) -> str:
    """The whole report (bench: results, notes, context, run_id; built: versions and build times)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    built_s = ", ".join(
        f"{what} {'cached' if not seconds else f'built in {seconds:.0f} s'}"
        for what, seconds in built.seconds.items()
    )
    lines = [
        f"# ripple vs. its peers, {when} (run {bench.run_id})",
        "",
        f"{os.cpu_count()} cores, load generator on the same machine as everything else; load average "
        f"(1/5/15 min) {load_start} at the start, {load_end} at the end. Ingress: wrk -t{config.threads} "
        f"-c{config.connections} -d{config.seconds}s after a {config.warmup} s warm-up, "
        "the same ~230-byte order event. "
        f"Dispatch: {config.dispatch_events} events per run.",
        "",
        *comparison(bench.results),
        "",
        "## Details",
        "",
        *details(bench.results),
        "",
        "## Peers and context",
        "",
        f"- Strimzi Kafka Bridge {config.bridge.tag} (commit {built.bridge_commit[:10]}, run on "
        f"{config.java17.name}); Knative eventing-kafka-broker {config.knative.tag} (commit "
        f"{built.knative_commit[:10]}; receiver-loom and dispatcher-loom on {config.java21.name}); "
        f"{built_s}.",
        *(f"- {line}" for line in bench.context),
        *(f"- {note}" for note in bench.notes),
        "",
    ]
    return "\n".join(lines)
