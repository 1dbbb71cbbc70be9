"""The report directory of a run: report.md, timeline.csv, phases.csv and timeline.png."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import astuple, fields
from pathlib import Path

from loadtest.plots import number, pyplot, save, shade_phase

from .config import LAG_MEANING
from .stats import (
    TIMELINE_COLUMNS,
    Check,
    Phase,
    PhaseSummary,
    Second,
    phase_table,
    reasons_table,
    verdict,
)

PROBE_COLUMNS = ("lag_event_store", "lag_flink", "stored_rows", "flink_order_lines", "flink_job", "notified")


def render_markdown(
    title: str,
    intro: str,
    summaries: Sequence[PhaseSummary],
    checks: Sequence[Check],
    notes: Sequence[str] = (),
    plot_name: str | None = "timeline.png",
    reasons: dict[tuple[int, str], int] | None = None,
    backlog_left: bool = False,
    sections: Sequence[str] = (),
) -> str:
    result = verdict(checks, backlog_left)
    lines = [f"# {title}", "", intro, "", f"**Verdict: {result}**", ""]
    if result == "INCONCLUSIVE":
        lines += [
            "The event-store was still working through a backlog when the drain timed out: the missing "
            "events may be late, not lost. `python -m loadtest.scenarios recheck <this directory>` "
            "decides once the lag is gone.",
            "",
        ]
    lines += ["## Phases", ""]
    lines.append(phase_table(summaries))
    lines += [
        "",
        "Requests are counted in the phase in which they were sent; latencies are client-side "
        "(nginx + gateway + Kafka ack). Lag is records not yet committed by the consumer group "
        "(event-store dispatcher; Flink commits on checkpoints only, so it trails by up to one "
        "checkpoint interval).",
        "",
        "## Checks",
        "",
    ]
    lines += [check.line() for check in checks]
    for section in sections:
        lines += ["", section.rstrip("\n")]
    if reasons:
        lines += ["", "## Answers other than 202", "", reasons_table(reasons)]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    if plot_name:
        lines += ["", "## Timeline", "", f"![timeline]({plot_name})", ""]
        lines.append(
            "Top: answers per second by status; middle: latency p50/p99 (log scale); bottom: "
            "consumer lag and this run's stored rows. Shaded red: the failure; orange: restarting. "
            + LAG_MEANING
        )
    return "\n".join(lines) + "\n"


def write_csvs(directory: Path, rows: Sequence[Second], summaries: Sequence[PhaseSummary]) -> None:
    with (directory / "timeline.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*TIMELINE_COLUMNS, *PROBE_COLUMNS])
        writer.writerows(row.as_row(PROBE_COLUMNS) for row in rows)
    with (directory / "phases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in fields(PhaseSummary)])
        writer.writerows(astuple(s) for s in summaries)


def plot_timeline(path: Path, rows: Sequence[Second], t0: float, shaded: Sequence[Phase], title: str) -> None:
    plt = pyplot()
    x = [row.second for row in rows]
    figure, (rates, latency, lag) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    figure.suptitle(title)
    for column, colour in (
        ("accepted", "tab:green"),
        ("rejected_429", "tab:orange"),
        ("unavailable_503", "tab:red"),
        ("error", "black"),
    ):
        values = [getattr(row, column) for row in rows]
        if any(values) or column == "accepted":
            rates.plot(x, values, label=column.replace("_", " "), color=colour, linewidth=1.2)
    rates.set_ylabel("requests/s")
    rates.legend(loc="upper right", fontsize="small")

    for column, style in (("p50_ms", "-"), ("p99_ms", "--")):
        latency.plot(x, [getattr(row, column) for row in rows], style, label=column.replace("_ms", ""))
    latency.set_yscale("log")
    latency.set_ylabel("latency ms (log)")
    latency.legend(loc="upper right", fontsize="small")

    for name, colour in (("lag_event_store", "tab:blue"), ("lag_flink", "tab:purple")):
        values = [number(row.probes.get(name)) for row in rows]
        lag.plot(x, values, label=name.replace("_", " "), color=colour)
    lag.set_ylabel("consumer lag (records)")
    stored = lag.twinx()
    stored.plot(
        x, [number(row.probes.get("stored_rows")) for row in rows], ":", color="gray", label="stored rows"
    )
    notified = [number(row.probes.get("notified")) for row in rows]
    if any(value is not None for value in notified):  # the bursts scenario: its mails recorded sent
        stored.plot(x, notified, "-.", color="tab:green", label="notified (sent)")
    stored.set_ylabel("stored rows of this run")
    handles = lag.get_legend_handles_labels()[0] + stored.get_legend_handles_labels()[0]
    lag.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize="small")
    lag.set_xlabel("seconds since start")

    for index, phase in enumerate(shaded):
        # The failure itself darker, the restart (component starting, not yet ready) lighter.
        colour, alpha = ("tab:red", 0.15) if index == 0 else ("tab:orange", 0.10)
        shade_phase((rates, latency, lag), phase, t0, colour, alpha)
    save(figure, path, dpi=110)
