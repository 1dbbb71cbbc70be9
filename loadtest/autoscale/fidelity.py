"""How faithful the local stand-ins are to real Knative, from two runs of the autoscale demo.

    python -m loadtest.autoscale.fidelity <stand-in run dir> <real Knative run dir>

Each argument is a directory the demo wrote (`make demo-autoscale` on the local stack, `make
cluster-demo` on infra/cluster), holding its `run.json`. The same load (options are compared and
a difference is reported) yields, per function: desired and ready instances over time, panic
episodes, instance starts (exec -> ready, and on the cluster pod created -> Ready), the first
request's wait, memory per instance (RSS: first reading, peak, idle), time back to zero, the
activator's request latency and accepted = stored once; and per run the drain (load end -> every
accepted event stored, which a consumer's time back to zero includes) and how often its instance
gauges were read (a decision shows in the series up to that late). Issue 18's targets are checked:
in the step phase the stand-in's desired instances within ±1 of Knative's for at least 90 % of the
5 s ticks (the ticks off by more than one are named), and time back to zero within ±10 s of
Knative's. Writes `report.md` and `fidelity.png` to a new
`loadtest/reports/fidelity-<time>/`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.plots import pyplot, save
from loadtest.scenarios.stats import Phase as _Phase
from loadtest.scenarios.stats import markdown_table, percentile

from .analysis import (
    MEMORY_GOAL_MIB,
    Series,
    episodes,
    first_zero_after,
    peak,
    step_value,
    within_one_share,
)

REPORTS = Path(__file__).resolve().parents[1] / "reports"
FUNCTIONS = ("gateway", "event-store", "order-alerts")  # the ones the demo's load scales
AGREEMENT_TARGET = 0.9
ZERO_TOLERANCE_S = 10.0
TICK_S = 5.0
OFF_TICKS_NAMED = 3  # the report names this many ticks off by more than one, then counts the rest


def phase(run: dict[str, Any], name: str) -> _Phase:
    for item in run["phases"]:
        if item["name"] == name:
            return _Phase(name, item["start"], item["end"])
    raise ValueError(f"run {run.get('run_id')} has no phase {name!r}")


def time_to_zero(run: dict[str, Any], function: str, after: str = "spike") -> float | None:
    """Seconds from the end of a phase to zero ready instances: "spike" (the load stopped; the
    target's measure) or "drain" (every accepted event stored)."""
    return first_zero_after(run["ready"].get(function, []), phase(run, after).end)


def drain_s(run: dict[str, Any]) -> float:
    """Seconds from the end of the load to every accepted event stored (the demo's drain): what a
    consumer's time back to zero after the load adds to its scale-down rules."""
    return round(phase(run, "drain").end - phase(run, "spike").end, 1)


def off_ticks(
    standin: Series, knative: Series, start: float, end: float, tick_s: float = TICK_S
) -> list[tuple[float, float, float]]:
    """The ticks of [start, end) where both series have a value and differ by more than one:
    (tick, stand-in, Knative), so a share below the target names the moments that cost it."""
    found = []
    t = start
    while t < end:
        a, b = step_value(standin, t), step_value(knative, t)
        if a is not None and b is not None and abs(a - b) > 1:
            found.append((t, a, b))
        t += tick_s
    return found


def reading_interval_s(run: dict[str, Any]) -> float | None:
    """Median seconds between two readings of the desired-instances gauge: the resolution of the
    run's series (a decision shows in it up to this late)."""
    gaps = [
        later[0] - earlier[0]
        for series in run["desired"].values()
        for earlier, later in itertools.pairwise(series)
    ]
    p50 = percentile(gaps, 50)
    return None if p50 is None else round(p50, 1)


def panic_summary(run: dict[str, Any], function: str) -> str:
    found = episodes(run["panic"].get(function, []))
    if not run["panic"]:
        return "not read"
    if not found:
        return "none"
    return f"{len(found)} ({sum(end - start for start, end in found):.0f} s)"


def starts_of(run: dict[str, Any], function: str) -> tuple[int, float | None]:
    """Instance starts of the function and their start -> ready p50 (ms)."""
    starts = [s for s in run["cold_starts"] if s["function"] == function]
    return len(starts), _p50_ms(starts, "ready_s")


def _p50_ms(starts: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in starts if s.get(key) is not None]
    p50 = percentile(values, 50)
    return None if p50 is None else round(p50 * 1000)


def cold_start_text(run: dict[str, Any], function: str, key: str) -> str:
    """p50 (ms) of one cold-start measure, with how many starts had it."""
    starts = [s for s in run["cold_starts"] if s["function"] == function and s.get(key) is not None]
    return "-" if not starts else f"{_n(_p50_ms(starts, key))} ({len(starts)})"


def memory_text(run: dict[str, Any], function: str) -> str:
    """RSS per instance: first reading p50 / peak / idle p50 MiB (instances), or why there is none."""
    if "memory" not in run:
        return "not read (older run)"
    item = run["memory"].get(function)
    if not item:
        return "no reading"
    return (
        f"{_n(item['first_p50'])} / {_n(item['peak'])} / {_n(item['idle_p50'])} ({item['instances']} inst.)"
    )


def stored_once(run: dict[str, Any]) -> str:
    checks = [c for c in run["checks"] if "stored" in c["name"] or "duplicate" in c["name"]]
    if not checks:
        return "not checked"
    failed = [c for c in checks if c["result"] == "FAIL"]
    return "FAIL" if failed else f"PASS ({run['accepted']} accepted)"


def compare(standin: dict[str, Any], knative: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """The table's rows (one per measure and function) and the target verdicts."""
    step_s, step_k = phase(standin, "step"), phase(knative, "step")
    end = min(step_s.end, step_k.end)
    rows: list[list[Any]] = []
    verdicts: list[str] = []
    for function in FUNCTIONS:
        share, ticks = within_one_share(
            standin["desired"].get(function, []), knative["desired"].get(function, []), 0.0, end, TICK_S
        )
        verdict = "no readings" if share is None else ("PASS" if share >= AGREEMENT_TARGET else "FAIL")
        share_text = "-" if share is None else f"{share:.0%} of {ticks} ticks"
        off = off_ticks(standin["desired"].get(function, []), knative["desired"].get(function, []), 0.0, end)
        if off:
            named = [f"{t:g} s: {_n(a)} vs {_n(b)}" for t, a, b in off[:OFF_TICKS_NAMED]]
            if len(off) > len(named):
                named.append(f"{len(off) - len(named)} more")
            share_text += f" (off by more than one at {', '.join(named)})"
        verdicts.append(f"{function}: desired within ±1 in the step: {share_text} -> {verdict}")
        zero_s, zero_k = time_to_zero(standin, function), time_to_zero(knative, function)
        if zero_s is None or zero_k is None:
            zero_verdict = "not reached"
        else:
            zero_verdict = "PASS" if abs(zero_s - zero_k) <= ZERO_TOLERANCE_S else "FAIL"
        verdicts.append(
            f"{function}: back to zero after the load {_n(zero_s)} s vs {_n(zero_k)} s "
            f"(±{ZERO_TOLERANCE_S:g} s) -> {zero_verdict}"
        )
        load = _Phase("load", 0.0, phase(standin, "spike").end)
        load_k = _Phase("load", 0.0, phase(knative, "spike").end)
        starts_s, starts_k = starts_of(standin, function), starts_of(knative, function)
        act_s = standin["activator_ms"].get(function, {})
        act_k = knative["activator_ms"].get(function, {})
        rows += [
            [function, "desired within ±1 of Knative's, step ticks", share_text, "(reference)"],
            [
                function,
                "peak desired / ready in step + spike",
                f"{_n(peak(standin['desired'].get(function, []), load))} / "
                f"{_n(peak(standin['ready'].get(function, []), load))}",
                f"{_n(peak(knative['desired'].get(function, []), load_k))} / "
                f"{_n(peak(knative['ready'].get(function, []), load_k))}",
            ],
            [function, "panic episodes (time in panic)", panic_summary(standin, function),
             panic_summary(knative, function)],
            [function, "instance starts; exec -> ready p50 ms", f"{starts_s[0]}; {_n(starts_s[1])}",
             f"{starts_k[0]}; {_n(starts_k[1])}"],
            [function, "pod created -> Ready p50 ms (starts)", "(no pod)",
             cold_start_text(knative, function, "pod_ready_s")],
            [function, "first request's wait in the activator p50 ms (held)",
             cold_start_text(standin, function, "first_request_wait_s"),
             cold_start_text(knative, function, "first_request_wait_s")],
            [function, f"RSS per instance MiB: first / peak / idle p50 (goal idle < {MEMORY_GOAL_MIB:g})",
             memory_text(standin, function), memory_text(knative, function)],
            [function, "back to zero after the load (s)", _n(zero_s), _n(zero_k)],
            [function, "back to zero after the drain (s)", _n(time_to_zero(standin, function, "drain")),
             _n(time_to_zero(knative, function, "drain"))],
            [function, "activator request latency p50 / p99 ms (count)", _latency(act_s), _latency(act_k)],
        ]  # fmt: skip
    first_s, first_k = standin.get("first_request") or {}, knative.get("first_request") or {}
    rows.append(
        ["gateway", "first request's wait (at zero), s", first_s.get("latency_s"), first_k.get("latency_s")]
    )
    rows.append(["all", "accepted = stored once", stored_once(standin), stored_once(knative)])
    rows.append(["all", "drain: load end -> every accepted event stored (s)", drain_s(standin),
                 drain_s(knative)])  # fmt: skip
    rows.append(
        ["all", "instance gauges read every (s, median)", _n(reading_interval_s(standin)),
         _n(reading_interval_s(knative))]
    )  # fmt: skip
    return rows, verdicts


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _latency(item: dict[str, Any]) -> str:
    if not item or not item.get("count"):
        return "-"
    p50, p99 = item.get("p50"), item.get("p99")
    return f"{_n(round(p50, 1) if p50 else p50)} / {_n(round(p99, 1) if p99 else p99)} ({int(item['count'])})"


def plot(path: Path, standin: dict[str, Any], knative: dict[str, Any]) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(len(FUNCTIONS), 1, figsize=(11, 3.2 * len(FUNCTIONS)), sharex=True)
    figure.suptitle("desired (dashed) and ready instances: stand-ins vs real Knative, same load")
    for axis, function in zip(axes, FUNCTIONS, strict=True):
        for run, colour, label in ((standin, "tab:blue", "stand-in"), (knative, "tab:red", "Knative")):
            for kind, style in (("ready", "-"), ("desired", "--")):
                series = run[kind].get(function, [])
                if series:
                    axis.step([t for t, _ in series], [v for _, v in series], style, where="post",
                              color=colour, label=f"{label} {kind}")  # fmt: skip
        for item in knative["phases"]:
            axis.axvline(item["end"], color="gray", linewidth=0.6)
        axis.set_ylabel(function)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper right", fontsize="small", ncols=2)
    axes[-1].set_xlabel("seconds since the step (grey lines: ends of Knative run's phases)")
    save(figure, path, dpi=100)


def report(standin_dir: Path, knative_dir: Path, out_dir: Path | None = None) -> Path:
    standin = json.loads((standin_dir / "run.json").read_text())
    knative = json.loads((knative_dir / "run.json").read_text())
    out = out_dir or REPORTS / f"fidelity-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    rows, verdicts = compare(standin, knative)
    plot(out / "fidelity.png", standin, knative)
    same_load = standin["options"] == knative["options"]
    lines = [
        "# Fidelity: local stand-ins vs real Knative, the same autoscale demo",
        "",
        f"Stand-ins: `{standin_dir.name}` (run {standin['run_id']}, load average "
        f"{_load(standin)}); real Knative: `{knative_dir.name}` (run {knative['run_id']}, load average "
        f"{_load(knative)}). Load: {knative['options']['step_rate']:g} req/s then "
        f"{knative['options']['spike_rate']:g} req/s, {knative['options']['batch']} events a request"
        + ("" if same_load else " (**the two runs' options differ**: see run.json)")
        + ".",
        "",
        "## Targets (issue 18)",
        "",
        *(f"- {line}" for line in verdicts),
        "",
        "## Side by side",
        "",
        markdown_table(["function", "measure", "stand-in", "real Knative"], rows),
        "",
        "Instances are the autoscalers' own gauges (`autoscaler_desired_pods`, `autoscaler_actual_pods`, "
        "`autoscaler_panic_mode`: the local activator exports Knative's names; on the cluster they are "
        "scraped from Knative's autoscaler every 2 s; locally read from Prometheus, which scrapes the "
        "activators every 2 s too (5 s in runs before issue 18's fix; the row 'instance gauges read "
        "every' gives each run's), so a decision can show in either series up to one reading late: the "
        "activator's log has the decision times). Instance starts: locally the activator's log "
        "(exec -> ready, ms); on the cluster each pod: the function container's start -> Ready (kubelet's "
        "timestamps, whole seconds: ±1 s) and created -> Ready (scheduling, sandbox, image, exec, probe). "
        "The first request's wait is known only locally (the activator logs it); on the cluster see the "
        "gateway's first request below. Memory: VmRSS summed over the function's own processes, read every "
        "few seconds while the instance was ready; locally the instance's process tree (pid from the "
        "activator), on the cluster the processes of the function container's memory cgroup (not "
        "queue-proxy), so both count the same pages; first = each instance's first reading (p50), idle = "
        "the readings after the drain (median). The activator's latency is its "
        "`activator_request_latencies` histogram over the run: the whole request through the activator, "
        "the function's own time included. Time back to zero counts from the end of the load (and, for the "
        "consumers, from the end of the drain: every accepted event stored).",
        "",
        "![fidelity](fidelity.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return out


def _load(run: dict[str, Any]) -> str:
    return " / ".join(f"{value:.1f}" for value in run.get("load_average", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.autoscale.fidelity", description=__doc__)
    parser.add_argument("standin", type=Path, help="the local demo's report directory")
    parser.add_argument("knative", type=Path, help="the cluster demo's report directory")
    arguments = parser.parse_args(argv)
    for directory in (arguments.standin, arguments.knative):
        if not (directory / "run.json").exists():
            print(f"fidelity: {directory}/run.json is missing: run the demo first", file=sys.stderr)
            return 2
    out = report(arguments.standin, arguments.knative)
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
