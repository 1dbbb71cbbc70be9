"""4. The consumer path: Kafka -> ripple's KafkaSource dispatcher -> event-store -> PostgreSQL,
unordered (issue 22's goal: >= 4,000 events/s). No peer: Knative has no event-store.

Measured with `make bench-dispatcher`'s own code (loadtest/dispatcher/bench.py: its pre-fill,
KafkaSource manifest, dispatcher run and row count), as its `--paths store --modes unordered`
measures it, so the one `make bench-peers` run prints this row beside the others. Isolated as the
other sections are: the backlog is in a private topic of this run (`ripple.peers.<run>.store-<n>`,
deleted with the others by Bench.cleanup), read by a new consumer group, and the events carry a
source of their own (`/bench/peers/<run>/<n>`), whose rows are deleted from `events` at the end.
event-store writes only PostgreSQL, so nothing reaches the stack's topics (the run's closing
check covers it). The stack's event-store and dead-letters instances are used as they are (the
KafkaSource's sink is the stack's address of event-store, through the local activator, as the
stack's own KafkaSource sends).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from loadtest.dispatcher import bench as dispatcher_bench
from loadtest.measure import stored_rows
from ripple_stack.settings import ConfigError

from . import procs
from .bench import Bench, loadavg
from .report import Measurement


def measure_store(
    bench: Bench, functions: dispatcher_bench.StackFunctions, scratch: Path, total: int, sources: list[str]
) -> Measurement:
    """One pre-filled backlog dispatched into event-store until every event is a row. A second
    attempt (Kafka restarted) gets a topic and a source of its own: the first one's rows would
    count."""
    attempt = len(sources) + 1
    topic = bench.topic(f"store-{attempt}")
    source = f"/bench/peers/{bench.run_id}/{attempt}"
    sources.append(source)
    print(f"store: pre-filling {topic} with {total} events…", flush=True)
    dispatcher_bench.prefill(bench.bootstrap, topic, source, total)
    manifest = dispatcher_bench.manifest(
        scratch,
        topic,
        "unordered",
        functions.urls["event-store"],
        functions.urls["dead-letters"],
        name=f"peers-store-{attempt}",
    )
    bench.run_dir.mkdir(parents=True, exist_ok=True)
    log = bench.run_dir / f"ripple-dispatcher-store-{attempt}.log"
    try:
        result = dispatcher_bench.run(
            manifest, lambda _port: stored_rows(functions.engine, source), total, functions.env, log, None
        )
    except SystemExit as error:  # count_until's way of saying the dispatcher died or gave up
        raise procs.PeerError(f"store: {error}") from None
    return Measurement(
        key="ripple-store",
        what="ripple dispatcher -> event-store -> PostgreSQL, unordered",
        rate=result.steady,
        events_per_s=result.overall,
        p50_ms=None,
        p99_ms=None,
        errors=0,  # the run ends only once every event is a row
        cpu_ms_per_event=result.cpu_ms_per_event,
        load=loadavg(),
        extra=f"{total} events stored; steady = rows between 10 % and 90 %; start->done "
        f"{result.seconds:.1f} s; CPU: the dispatcher process only",
    )


def run(bench: Bench) -> None:
    bench.snapshot("store")
    total = bench.config.store_events
    try:
        functions = dispatcher_bench.stack_functions(bench.settings)
    except ConfigError as error:
        raise procs.PeerError(f"store: {error}") from None
    sources: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            bench.measure(lambda: measure_store(bench, functions, Path(scratch), total, sources))
    finally:
        failure = dispatcher_bench.remove_rows(functions.engine, sources)
        if failure:
            bench.notes.append(f"store: {failure}")
        functions.engine.dispose()
    bench.notes.append(
        f"store: {total} binary-mode order events pre-filled into a private topic, dispatched by "
        "ripple's KafkaSource dispatcher (unordered, `make bench-dispatcher`'s manifest: retry 8, "
        "timeout 10 s, dead letters to the stack's dead-letters) into the stack's event-store as it "
        "was found (instances at zero start cold: the steady window from 10 % of the rows leaves "
        "most of that out); events/s is events / (dispatcher start -> last row); the run's rows "
        "are deleted afterwards."
    )
