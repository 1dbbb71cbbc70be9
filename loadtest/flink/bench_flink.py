"""How fast the Flink aggregation job turns events into PostgreSQL rows (`make bench-flink`).

Phase 1, throughput: stop the job with a savepoint, pre-fill the topics with N events of a fresh
tenant, resubmit the job from the savepoint and time how fast the tenant's running totals catch
up (events/s = events counted / time from the first to the last count seen).
Phase 2, delay: with the job keeping up, send events at a steady rate stamped with the send time,
and measure for every event the delay from its event time until it is visible in PostgreSQL:
in the running totals (polled every 0.2 s) and in its per-minute row (written_at, set by
PostgreSQL when the row is written; a window row is written once the watermark passes its end,
so this delay includes the rest of the minute and the allowed lateness by design).
The delay phase also reads the TaskManager's CPU (its process tree in /proc, via supervisord's
pid) from the first event sent to the last counted: CPU ms per event and cores used, what the job
costs the stack per event at that rate (issue 22). Not in the backlog phase: its window (first to
last count, 2-7 s) starts after up to a second of work whose counts land inside it.

Runs against the local stack (make up); the events of the bench tenant stay in the tables.

Unlike the gateway's benchmarks (loadtest/isolation.py), this one writes the stack's own topics
(`ripple.shop.*`): what it measures is the stack's Flink job, which reads exactly those, and a
private job would measure another deployment. Its events carry a fresh tenant of their own
(`bench-…`), so the aggregates it checks are its own; the stack's KafkaSources (event-store,
order-alerts) receive them too. So the run ends by waiting until the stack's consumer groups have
caught up (`isolation.wait_for_zero_lag`, up to --lag-within s): it prints each reading, and exits
1 if the lag is not back to 0, so that no measurement after it starts on a backlog.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "flink" / "tests"))
from flink_testkit import (  # the test kit writes events as the gateway does
    Heartbeat,
    make_events,
    minute,
    new_tenant,
    producer,
    tenant_rows,
)

from loadtest import isolation
from loadtest.measure import percentile
from loadtest.scenarios import cpu
from ripple_stack import flink_job
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import load_settings


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def counted(engine: sa.Engine, tenant: str, before: int = 0) -> int:
    """The tenant's events counted so far; `before` while PostgreSQL does not answer (shared
    stack: other developers' failure drills stop it now and then)."""
    try:
        rows = tenant_rows(engine, "agg_tenant_totals", "orders + payments + pageviews", tenant)
    except sa.exc.OperationalError:
        return before
    return int(rows[0][0]) if rows else 0


TASKMANAGER = "flink-taskmanager"  # the supervisord program (infra/local/ripple_stack/components/flink.py)


def taskmanager_cpu(settings) -> tuple[int, float] | None:
    """(pid, CPU seconds so far of its process tree) of the TaskManager; None without one."""
    try:
        pid = cpu.program_pids(settings).get(TASKMANAGER, 0)
    except Exception:  # no supervisord (a cluster run): the CPU lines are left out, not the run
        return None
    seconds = cpu.tree_cpu_seconds(pid) if pid else None
    return (pid, seconds) if seconds is not None else None


def cpu_used(before: tuple[int, float] | None, after: tuple[int, float] | None) -> float | None:
    """The TaskManager's CPU seconds between two readings; None if it restarted in between."""
    if before is None or after is None or before[0] != after[0]:
        return None
    return after[1] - before[1]


def throughput(settings, secrets, engine: sa.Engine, events: int) -> dict:
    tenant = new_tenant("bench")
    # Held until the resubmission: a `make up` meanwhile must not submit the stopped job itself.
    with flink_job.exclusive(settings):
        savepoint = flink_job.stop_with_savepoint(settings, say)
        say(f"pre-filling the topics with {events} events of {tenant}…")
        kafka = producer(settings.kafka_bootstrap)
        started = time.monotonic()
        for event in make_events(tenant, events, datetime.now(UTC), timedelta(seconds=5), seed=5):
            event.send(kafka)
        kafka.flush()
        kafka.close()
        say(f"pre-filled in {time.monotonic() - started:.1f} s; resubmitting the job from {savepoint}")
        submitted = time.monotonic()
        flink_job.submit(settings, secrets, savepoint)
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        now, count = time.monotonic(), counted(engine, tenant)
        if count and first is None:
            first = (now, count)
        if count >= events:
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"the job did not count all {events} events within 15 minutes")
    assert first is not None
    elapsed = now - first[0]
    return {
        "events": events,
        "seconds": elapsed,
        "events_per_s": (events - first[1]) / elapsed if elapsed > 0 else float("inf"),
        "seconds_from_submission": now - submitted,
    }


def delay(settings, engine: sa.Engine, rate: float, seconds: float) -> dict:
    tenant = new_tenant("bench-delay")
    total = int(rate * seconds)
    say(f"sending {total} events at {rate:.0f}/s, stamped with their send time…")
    kafka = producer(settings.kafka_bootstrap)
    sent: list = []
    visible: list[tuple[float, int]] = []  # (wall clock, count) samples of the running totals
    start_cpu = taskmanager_cpu(settings)
    start = time.monotonic()
    with Heartbeat(settings.kafka_bootstrap):
        next_poll = 0.0
        for n in range(total):
            event = make_events(tenant, 1, datetime.now(UTC), timedelta(0), seed=n)[0]
            event.data = {**event.data, **({"orderId": f"o-{n}"} if "orderId" in event.data else {})}
            event.time = datetime.now(UTC)
            event.send(kafka)
            sent.append(event)
            if time.monotonic() >= next_poll:
                kafka.flush()
                visible.append((time.time(), counted(engine, tenant, visible[-1][1] if visible else 0)))
                next_poll = time.monotonic() + 0.2
            ahead = start + (n + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        kafka.flush()
        kafka.close()
        while visible[-1][1] < total:
            time.sleep(0.2)
            visible.append((time.time(), counted(engine, tenant, visible[-1][1] if visible else 0)))
        # From the first event sent to the last counted: the steady cost, the job's own timers,
        # checkpoints and the heartbeat's few events included.
        cpu_s = cpu_used(start_cpu, taskmanager_cpu(settings))
        cpu_wall_s = time.monotonic() - start
        # Every per-minute row of the tenant written (the heartbeat moves the watermark on).
        windows = {(e.type, minute(e.time)) for e in sent}
        rows: list = []
        while len(rows) < len(windows):
            time.sleep(1)
            try:
                columns = "event_type, window_start, written_at"
                rows = tenant_rows(engine, "agg_events_per_minute", columns, tenant)
            except sa.exc.OperationalError:
                continue
    written = {(kind, start_): at for kind, start_, at in rows}
    running, windowed = [], []
    index = 0
    for k, event in enumerate(sent):
        while visible[index][1] < k + 1:
            index += 1
        running.append(visible[index][0] - event.time.timestamp())
        windowed.append((written[(event.type, minute(event.time))] - event.time).total_seconds())
    return {
        "events": total,
        "running": running,
        "windowed": windowed,
        "cpu_ms_per_event": 1000 * cpu_s / total if cpu_s is not None and total else None,
        "cores": cpu_s / cpu_wall_s if cpu_s is not None and cpu_wall_s > 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=50000, help="events pre-filled for the throughput phase"
    )
    parser.add_argument("--rate", type=float, default=300, help="events/s of the delay phase")
    parser.add_argument("--seconds", type=float, default=90, help="duration of the delay phase")
    parser.add_argument(
        "--lag-within", type=float, default=180, help="seconds the stack's consumer lag may take to reach 0"
    )
    arguments = parser.parse_args()
    settings = load_settings()
    secrets = load_secrets(settings)
    engine = sa.create_engine(settings.postgres_url(secrets["RIPPLE_POSTGRES_PASSWORD"]), pool_pre_ping=True)
    flink_job.ensure_running(settings, secrets, say)
    say("load average (1, 5, 15 min) at the start: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))

    speed = throughput(settings, secrets, engine, arguments.events)
    latency = delay(settings, engine, arguments.rate, arguments.seconds)
    engine.dispose()

    print()
    print(f"{'measure':52} {'value':>12}")
    print(f"{'backlog of pre-filled events':52} {speed['events']:>12}")
    print(f"{'catch-up time (first to last count seen), s':52} {speed['seconds']:>12.1f}")
    print(f"{'throughput into PostgreSQL, bench events/s':52} {speed['events_per_s']:>12.0f}")
    print(
        f"{'all counted, from resubmission (CLI + restore), s':52} {speed['seconds_from_submission']:>12.1f}"
    )
    print(f"{'delay phase: events at steady rate':52} {latency['events']:>12}")
    for name in ("running", "windowed"):
        values = latency[name]
        table = "running totals" if name == "running" else "per-minute row"
        print(f"{f'event time -> {table} visible, p50 s':52} {statistics.median(values):>12.2f}")
        print(f"{f'event time -> {table} visible, p99 s':52} {percentile(values, 99):>12.2f}")
    if latency["cpu_ms_per_event"] is not None:
        print(f"{'TaskManager CPU, delay phase, ms per event':52} {latency['cpu_ms_per_event']:>12.3f}")
        print(f"{'TaskManager CPU, delay phase, cores':52} {latency['cores']:>12.2f}")
    print(
        f"{'load average at the end (1, 5, 15 min)':52} {', '.join(f'{x:.2f}' for x in os.getloadavg()):>12}"
    )
    print()
    print(
        f"stack consumer lag (the bench wrote its topics), waiting up to {arguments.lag_within:.0f} s for 0:"
    )
    took = isolation.wait_for_zero_lag(settings.kafka_bootstrap, arguments.lag_within)
    if took is None:
        print(
            f"WARNING: lag NOT back to 0 within {arguments.lag_within:.0f} s (Flink's trails by a checkpoint)"
        )
        return 1
    print(f"lag back to 0 after {took:.0f} s")
    return 0


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-flink"):
        sys.exit(main())
