"""python -m loadtest.locust.report <dir> [run-id]: report.md and timeline.png of a Locust run.

Reads the CSV files of `locust --csv <dir>/locust --csv-full-history` (what `make load` writes),
prints the summary table and writes <dir>/report.md with the plot next to it.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from loadtest.plots import pyplot, save
from loadtest.scenarios.stats import markdown_table
from ripple_stack.batch_runs import push_run

AGGREGATED = "Aggregated"
REJECTED = "429 rejected"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def summary_table(stats: list[dict[str, str]]) -> str:
    headers = ("request", "count", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    rows = []
    for row in stats:
        name = row["Name"]
        rows.append(
            (
                "all requests" if name == AGGREGATED else name,
                int(row["Request Count"]),
                int(row["Failure Count"]),
                round(float(row["Requests/s"]), 1),
                _float(row.get("50%")),
                _float(row.get("95%")),
                _float(row.get("99%")),
                round(float(row["Max Response Time"]), 1),
            )
        )
    return markdown_table(headers, rows)


def outcome_line(stats: list[dict[str, str]]) -> str:
    by_name = {row["Name"]: row for row in stats}
    total = int(by_name[AGGREGATED]["Request Count"]) if AGGREGATED in by_name else 0
    failures = int(by_name[AGGREGATED]["Failure Count"]) if AGGREGATED in by_name else 0
    rejected = int(by_name[REJECTED]["Request Count"]) if REJECTED in by_name else 0
    accepted = total - failures - rejected
    share = (lambda n: f"{n / total:.1%}") if total else (lambda n: "-")
    return (
        f"{total} requests: {accepted} accepted (202, {share(accepted)}), {rejected} rejected by nginx "
        f"(429, {share(rejected)}), {failures} failed ({share(failures)})"
    )


def failures_table(path: Path) -> str | None:
    if not path.exists():
        return None
    rows = read_rows(path)
    if not rows:
        return None
    return markdown_table(
        ("request", "error", "count"), [(r["Name"], r["Error"], int(r["Occurrences"])) for r in rows]
    )


def plot(history: list[dict[str, str]], path: Path) -> None:
    plt = pyplot()
    series: dict[str, dict[int, dict[str, str]]] = defaultdict(dict)
    for row in history:
        series[row["Name"]][int(row["Timestamp"])] = row
    total = series.get(AGGREGATED, {})
    if not total:
        return
    start = min(total)
    seconds = sorted(total)
    x = [t - start for t in seconds]

    def column(name: str, field: str) -> list[float | None]:
        rows = series.get(name, {})
        return [_float(rows[t].get(field)) if t in rows else None for t in seconds]

    requests = column(AGGREGATED, "Requests/s")
    failures = column(AGGREGATED, "Failures/s")
    rejected = [v or 0.0 for v in column(REJECTED, "Requests/s")]
    accepted = [
        max(0.0, (r or 0.0) - (f or 0.0) - j) for r, f, j in zip(requests, failures, rejected, strict=True)
    ]
    figure, (rates, latency) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    figure.suptitle("Locust run: shop traffic through nginx")
    rates.plot(x, accepted, label="accepted (202)/s", color="tab:green")
    rates.plot(x, rejected, label="rejected (429)/s", color="tab:orange")
    rates.plot(x, failures, label="failed/s", color="tab:red")
    rates.set_ylabel("requests/s")
    users = rates.twinx()
    users.plot(x, column(AGGREGATED, "User Count"), ":", color="gray", label="users")
    users.set_ylabel("users")
    handles = rates.get_legend_handles_labels()[0] + users.get_legend_handles_labels()[0]
    rates.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize="small")
    for field, style in (("50%", "-"), ("95%", "--"), ("99%", ":")):
        # 0 means "no request in the window" for Locust: leave a gap on the log scale.
        values = [v if v else None for v in column(AGGREGATED, field)]
        latency.plot(x, values, style, label=f"p{field.rstrip('%')}")
    latency.set_yscale("log")
    latency.set_ylabel("latency ms (log), 10 s window")
    latency.set_xlabel("seconds since start")
    latency.legend(loc="upper left", fontsize="small")
    save(figure, path, dpi=110)


def stored_events(run_id: str) -> str | None:
    """How many of the run's events the event-store wrote (it may still be catching up)."""
    try:
        import psycopg2

        from loadtest.scenarios.config import load_config

        with psycopg2.connect(load_config().postgres_dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM events WHERE source = %s", (f"/loadtest/{run_id}",))
            return f"events stored so far under source /loadtest/{run_id}: {cursor.fetchone()[0]}"
    except Exception as error:  # the report must not fail because PostgreSQL is not reachable
        return f"stored events not counted: {error}"


def main(argv: list[str]) -> int:
    if not argv:
        usage = "usage: python -m loadtest.locust.report <report-dir> [run-id [locust-exit-code]]"
        print(usage, file=sys.stderr)
        return 2
    directory = Path(argv[0])
    stats_file = directory / "locust_stats.csv"
    if not stats_file.exists():
        print(f"{stats_file} is missing: did the Locust run start? (see its output above)", file=sys.stderr)
        return 2
    stats = read_rows(stats_file)
    history_file = directory / "locust_stats_history.csv"
    history = read_rows(history_file) if history_file.exists() else []
    times = [int(r["Timestamp"]) for r in history if r["Name"] == AGGREGATED]
    seconds = (max(times) - min(times)) if times else None
    table = summary_table(stats)
    lines = ["# Locust run", "", outcome_line(stats), ""]
    if seconds:
        lines += [f"Duration about {seconds} s.", ""]
    lines += [table, ""]
    lines += [
        "Rows are per request kind; `429 rejected` are requests nginx turned away (not failures: the "
        "shopper waits Retry-After and goes on). Latencies are client-side through nginx, in ms.",
        "",
    ]
    failures = failures_table(directory / "locust_failures.csv")
    if failures:
        lines += ["## Failures", "", failures, ""]
    if len(argv) > 1:
        counted = stored_events(argv[1])
        if counted:
            lines += [f"- {counted}", ""]
    if history:
        plot(history, directory / "timeline.png")
        lines += ["## Timeline", "", "![timeline](timeline.png)", ""]
    text = "\n".join(lines)
    (directory / "report.md").write_text(text)
    print(text)
    print(f"report: {directory / 'report.md'}")
    if len(argv) > 2:  # a real run (`make load` passes Locust's exit code); re-reporting pushes nothing
        push_result(stats, seconds, locust_exit=int(argv[2]))
    return 0


def push_result(stats: list[dict[str, str]], seconds: int | None, locust_exit: int) -> None:
    """The run's counts to the Pushgateway (job "load"); it passed when Locust says so (exit 0)."""
    by_name = {row["Name"]: row for row in stats}
    counts = {
        "requests": int(by_name[AGGREGATED]["Request Count"]) if AGGREGATED in by_name else 0,
        "failures": int(by_name[AGGREGATED]["Failure Count"]) if AGGREGATED in by_name else 0,
        "rejected": int(by_name[REJECTED]["Request Count"]) if REJECTED in by_name else 0,
    }
    passed = locust_exit == 0 and counts["requests"] > 0
    push_run("load", duration_s=seconds or 0, passed=passed, counts=counts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
