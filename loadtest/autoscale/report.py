"""The demo's picture: events/s, instances per function, lag, and event -> row delay over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtest.plots import number, pyplot, save, shade_phase
from loadtest.scenarios.stats import Phase, Second, percentile

from .analysis import Series


def plot_demo(
    path: Path,
    rows: Sequence[Second],
    ready: Mapping[str, Series],
    desired: Mapping[str, Series],
    delays: Sequence[tuple[float, float]],
    t0: float,
    phases: Sequence[Phase],
    title: str,
) -> None:
    plt = pyplot()
    figure, (load, pods, lag, delay) = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    figure.suptitle(title)
    x = [row.second for row in rows]
    load.plot(x, [row.accepted_events for row in rows], color="tab:green", label="events accepted (202)")
    load.plot(x, [row.rejected_429 for row in rows], color="tab:orange", label="requests refused (429)")
    load.set_ylabel("per second")
    load.legend(loc="upper right", fontsize="small")

    for index, (function, series) in enumerate(sorted(ready.items())):
        colour = f"C{index % 10}"
        pods.step(
            [t - t0 for t, _ in series], [v for _, v in series], where="post", color=colour, label=function
        )
        wanted = desired.get(function, ())
        if wanted:
            pods.step([t - t0 for t, _ in wanted], [v for _, v in wanted], "--", where="post", color=colour)
    pods.set_ylabel("ready instances")
    pods.legend(loc="upper right", fontsize="small", ncols=2)

    lag.plot(x, [number(row.probes.get("lag_event_store")) for row in rows], color="tab:blue", label="lag")
    lag.set_ylabel("event-store lag (records)")
    stored = lag.twinx()
    stored.plot(x, [number(row.probes.get("stored_rows")) for row in rows], ":", color="gray")
    stored.set_ylabel("stored rows of this run")

    by_second: dict[int, list[float]] = {}
    for received_at, seconds in delays:
        by_second.setdefault(int(received_at - t0), []).append(seconds * 1000)
    seconds_axis = sorted(by_second)
    for q, style in ((50, "-"), (99, "--")):
        delay.plot(seconds_axis, [percentile(by_second[s], q) for s in seconds_axis], style, label=f"p{q}")
    delay.set_yscale("log")
    delay.set_ylabel("event -> row ms (log)")
    delay.legend(loc="upper right", fontsize="small")
    delay.set_xlabel("seconds since the step")

    for index, phase in enumerate(phases):
        shade_phase((load, pods, lag, delay), phase, t0, f"C{index}", 0.06)
    save(figure, path, dpi=100)
