"""The markdown report of `make bench-peers`: one comparison table with ratios and goals, details.

Pure formatting of what __main__ measured, so it can be read (and tested) without a stack. The
goals are issue 22's, each judged on figures of the same run:
- the gateway, single binary events (wrk): >= 0.8x Knative's Kafka broker receiver's req/s, and a
  p99 no more than 2x the receiver's p99 (both must hold);
- the gateway, batches of 100: >= 2x the Strimzi bridge's events/s at 100 records/request;
- ripple's KafkaSource dispatcher into a trivial sink, unordered: >= 0.5x Knative's dispatcher
  (issue 13's goal, kept: issue 22 sets none for it); ordered: keep >= 1,000 events/s;
- Kafka -> dispatcher -> event-store -> PostgreSQL, unordered: >= 4,000 events/s (no peer).
Only ratios and absolutes of one run are compared: figures move a lot between runs on this box.
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


# Issue 22's goals (the module docstring says what each compares).
SINGLE_RATIO = 0.8  # ripple's gateway req/s / Knative's receiver req/s, at least
SINGLE_P99_FACTOR = 2.0  # ripple's gateway p99 / the receiver's p99, at most
BATCH_RATIO = 2.0  # gateway batch events/s / Strimzi bridge events/s, at least
UNORDERED_RATIO = 0.5  # ripple's dispatcher / Knative's, unordered (issue 13's, kept)
ORDERED_MIN = 1000.0  # ripple's ordered deliveries/s, at least (kept)
STORE_MIN = 4000.0  # Kafka -> dispatcher -> event-store -> PostgreSQL events/s, at least


def single_met(gateway: Measurement | None, receiver: Measurement | None) -> bool | None:
    """Gateway vs receiver: req/s ratio and p99 both within the goal; None when either is missing
    (or has no rate or p99 to compare)."""
    if gateway is None or receiver is None or not receiver.rate:
        return None
    if gateway.p99_ms is None or not receiver.p99_ms:
        return None
    return (
        gateway.rate / receiver.rate >= SINGLE_RATIO and gateway.p99_ms <= SINGLE_P99_FACTOR * receiver.p99_ms
    )


def ratio_met(ours: float | None, theirs: float | None, minimum: float) -> bool | None:
    """ours / theirs >= minimum; None when either was not measured (or theirs is 0)."""
    if ours is None or not theirs:
        return None
    return ours / theirs >= minimum


def at_least(value: float | None, minimum: float) -> bool | None:
    """value >= minimum; None when it was not measured."""
    return None if value is None else value >= minimum


def _p99_ratio(ours: Measurement | None, theirs: Measurement | None) -> str:
    if ours is None or theirs is None or ours.p99_ms is None or not theirs.p99_ms:
        return ""
    return f", p99 {ours.p99_ms / theirs.p99_ms:.2f}x"


def comparison(results: list[Measurement], wrk: str = "wrk") -> list[str]:
    """The headline table: ripple vs the peer measured in the same run, ratio, issue 22's goal.
    wrk names the load (e.g. "wrk -t2 -c32")."""
    by = {m.key: m for m in results}
    g1, k1, b1 = by.get("gateway-single"), by.get("knative-single"), by.get("bridge-single")
    gb, bb = by.get("gateway-batch"), by.get("bridge-batch")
    ru, ku = by.get("ripple-unordered"), by.get("knative-unordered")
    ro, ko = by.get("ripple-ordered"), by.get("knative-ordered")
    rs = by.get("ripple-store")
    kp = by.get("kafka-producer")
    rows = [
        "| path | ripple | peer, same run | ripple / peer | goal (issue 22) | met |",
        "|---|---|---|---|---|---|",
    ]

    def rate(m: Measurement | None) -> float | None:
        return m.rate if m else None

    def events(m: Measurement | None) -> float | None:
        return m.events_per_s if m else None

    batch = gb.what.rsplit(" ", 1)[-1] if gb else "100"
    best = max(events(gb) or 0, events(g1) or 0)
    single_ratio = _ratio(rate(g1), rate(k1))
    if single_ratio != "—":
        single_ratio += _p99_ratio(g1, k1)
    rows += [
        f"| single binary events ({wrk}) vs **Knative Kafka broker receiver** | {_cell(g1, 'req')} | "
        f"{_cell(k1, 'req')} | {single_ratio} | ≥ {SINGLE_RATIO}x and p99 ≤ {SINGLE_P99_FACTOR:.0f}x "
        f"the receiver's | {_met(single_met(g1, k1))} |",
        f"| single binary events ({wrk}) vs **Strimzi bridge**, 1 record/request, keep-alive | "
        f"{_cell(g1, 'req')} | {_cell(b1, 'req')} | {_ratio(rate(g1), rate(b1))} | — | — |",
        f"| batches of {batch} vs **Strimzi bridge**, {batch} records/request | {_cell(gb, 'events')} | "
        f"{_cell(bb, 'events')} | {_ratio(events(gb), events(bb))} | ≥ {BATCH_RATIO:.0f}x | "
        f"{_met(ratio_met(events(gb), events(bb), BATCH_RATIO))} |",
        f"| KafkaSource dispatcher → nginx `return 202`, unordered, vs **Knative dispatcher** | "
        f"{_cell(ru, 'rate')} | {_cell(ku, 'rate')} | {_ratio(rate(ru), rate(ku))} | "
        f"≥ {UNORDERED_RATIO}x (issue 13's; issue 22 sets no new goal) | "
        f"{_met(ratio_met(rate(ru), rate(ku), UNORDERED_RATIO))} |",
        f"| KafkaSource dispatcher → nginx `return 202`, ordered, vs **Knative dispatcher** | "
        f"{_cell(ro, 'rate')} | {_cell(ko, 'rate')} | {_ratio(rate(ro), rate(ko))} | "
        f"keep ≥ {_num(ORDERED_MIN)} events/s | {_met(at_least(rate(ro), ORDERED_MIN))} |",
        f"| Kafka → dispatcher → event-store → PostgreSQL, unordered | {_cell(rs, 'rate')} | — (no peer) | "
        f"— | ≥ {_num(STORE_MIN)} events/s | {_met(at_least(rate(rs), STORE_MIN))} |",
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
        f"Dispatch: {config.dispatch_events} events per run; store: {config.store_events} events. "
        "Goals: issue 22's, each judged on this run's figures.",
        "",
        *comparison(bench.results, f"wrk -t{config.threads} -c{config.connections}"),
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
