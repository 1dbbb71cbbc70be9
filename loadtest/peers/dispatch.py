"""2. Dispatch: a pre-filled backlog delivered to the same trivial sink by ripple's KafkaSource
dispatcher and Knative's dispatcher-loom, unordered and ordered."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from kafka import KafkaProducer

from loadtest.measure import free_port

from . import procs
from .bench import Bench, loadavg
from .report import Measurement


def prefill(bench: Bench, topic: str, count: int, prefix: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bench.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    for n in range(count):
        order_id = f"o-{n % 5000}"
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", f"{prefix}-{n}".encode()),
            ("ce_source", b"/loadtest/peers"),
            ("ce_type", b"dev.ripple.shop.order.placed"),
            ("ce_time", b"2026-11-25T12:00:00Z"),
            ("content-type", b"application/json"),
        ]
        value = (
            f'{{"orderId":"{order_id}","customerId":"c-{n % 97}","items":[{{"sku":"sku-1",'
            f'"quantity":1,"unitPrice":12.5}}],"amount":12.5,"currency":"EUR"}}'
        ).encode()
        producer.send(topic, key=order_id.encode(), value=value, headers=headers)
    producer.flush(120)
    producer.close()


def ripple_dispatcher(
    bench: Bench, topic: str, group: str, sink_url: str, ordered: bool, scratch: Path
) -> procs.Process:
    mode = "ordered" if ordered else "unordered"
    manifest = scratch / f"peers-{mode}.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "sources.knative.dev/v1beta1",
                "kind": "KafkaSource",
                "metadata": {"name": f"peers-{mode}", "namespace": "ripple"},
                "spec": {
                    "bootstrapServers": [bench.bootstrap],
                    "topics": [topic],
                    "consumerGroup": group,
                    "initialOffset": "earliest",
                    "ordering": mode,
                    "sink": {"uri": sink_url},
                    # the same delivery as the Knative contract: 3 retries, exponential from 200 ms
                    "delivery": {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S"},
                },
            }
        )
    )
    return procs.Process(
        f"ripple-dispatcher-{mode}",
        [
            sys.executable,
            "-m",
            "knative_standins.kafkasource",
            str(manifest),
            "--metrics-port",
            str(free_port()),
        ],
        bench.run_dir / f"ripple-dispatcher-{mode}.log",
    )


def measure_dispatch(bench: Bench, key: str, what: str, start, sink: procs.Sink, total: int) -> Measurement:
    """Deliveries/s and CPU per event once warm: from the first 10 % of the backlog to the last event.

    JIT compilation and connection set-up fall into the first 10 % for the JVM and for Python
    alike; start->done (in the notes) includes process start and the group join.
    """
    sink.reset()
    warm = max(1, total // 10)
    started = time.monotonic()
    process = start()
    previous = (0, procs.tree_cpu_seconds(process.pid))  # (deliveries, CPU s) of the last sample
    at_warm: tuple[int, float] | None = None
    # generous: the slowest peer (Knative ordered, 250 events/s) plus JVM start and group join
    deadline = started + max(180.0, total / 100)
    delivered = 0
    try:
        while True:
            delivered = sink.count()
            cpu = procs.tree_cpu_seconds(process.pid)
            if at_warm is None and delivered >= warm:
                at_warm = previous
            previous = (delivered, cpu)
            if delivered >= total:
                break
            if not process.alive():
                bench.notes.append(
                    f"{what}: the dispatcher exited after {delivered} deliveries ({process.log})"
                )
                break
            if time.monotonic() > deadline:
                bench.notes.append(
                    f"{what}: stopped after {deadline - started:.0f} s with {delivered}/{total}"
                )
                break
            time.sleep(0.25)
        cpu_end = procs.tree_cpu_seconds(process.pid) if process.alive() else previous[1]
        elapsed = time.monotonic() - started
    finally:
        process.stop()
    time.sleep(0.5)
    seen = sink.summary()
    times = seen["times"]
    steady = 0.0
    if len(times) > warm + 1:
        steady = (len(times) - 1 - warm) / max(times[-1] - times[warm], 1e-3)
    whole = (len(times) - 1) / max(times[-1] - times[0], 1e-3) if len(times) > 1 else 0.0
    cpu_ms = None
    if at_warm is not None and seen["requests"] > at_warm[0]:
        cpu_ms = (cpu_end - at_warm[1]) * 1000 / (seen["requests"] - at_warm[0])
    return Measurement(
        key=key,
        what=what,
        rate=steady,
        events_per_s=seen["distinct"] / elapsed,
        p50_ms=None,
        p99_ms=None,
        errors=seen["non_2xx"] + max(0, total - seen["distinct"]),
        cpu_ms_per_event=cpu_ms,
        load=loadavg(),
        extra=f"{seen['requests']} requests, {seen['distinct']} distinct ids; first->last "
        f"{whole:,.0f}/s; start->done {elapsed:.1f} s",
    )


def run(bench: Bench) -> None:
    bench.snapshot("dispatch")
    config = bench.config
    total = config.dispatch_events
    topic = bench.topic("dispatch")
    print(f"dispatch: pre-filling {topic} with {total} events…", flush=True)
    prefill(bench, topic, total, f"peers-{bench.run_id}")
    sink = procs.Sink(config.home, config.sink_port)
    sink.start()
    healthy = Path("/tmp/healthy")  # Knative's dispatcher writes its readiness file there
    had_healthy = healthy.exists()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for ordered in (False, True):
                mode = "ordered" if ordered else "unordered"

                # every attempt gets a new consumer group, so it reads the whole backlog again
                def ripple(o: bool = ordered, m: str = mode) -> procs.Process:
                    group = f"ripple-peers-{bench.run_id}-ripple-{m}-{uuid.uuid4().hex[:6]}"
                    return ripple_dispatcher(bench, topic, group, sink.url(), o, Path(scratch))

                def knative(o: bool = ordered, m: str = mode) -> procs.Process:
                    return procs.start_knative_dispatcher(
                        bench.built.dispatcher_jar,
                        config.java21,
                        bench.run_dir / f"knative-dispatcher-{m}",
                        bench.bootstrap,
                        topic,
                        f"ripple-peers-{bench.run_id}-knative-{m}-{uuid.uuid4().hex[:6]}",
                        sink.url(),
                        o,
                    )

                bench.measure(
                    lambda m=mode, start=ripple: measure_dispatch(
                        bench, f"ripple-{m}", f"ripple KafkaSource dispatcher, {m}", start, sink, total
                    )
                )
                bench.measure(
                    lambda m=mode, start=knative: measure_dispatch(
                        bench, f"knative-{m}", f"Knative dispatcher-loom, {m}", start, sink, total
                    )
                )
    finally:
        sink.stop()
        if not had_healthy:
            with contextlib.suppress(OSError):
                healthy.unlink()
    max_in_flight = os.environ.get("RIPPLE_DISPATCHER_MAX_IN_FLIGHT", "100 (default)")
    bench.notes.append(
        f"dispatch: {total} binary-mode order events (3 partitions, keyed by order id) pre-filled once; "
        "each dispatcher reads them with its own new consumer group into the same nginx `return 202` "
        "(1 worker). deliveries/s and CPU ms/event (process tree, /proc) are "
        "measured once warm, from the first 10 % of the backlog to the last event; events/s is "
        "events / (process start -> done), with start-up and group join. "
        "ripple: RIPPLE_DISPATCHER_MAX_IN_FLIGHT="
        f"{max_in_flight}; Knative: upstream KafkaSource settings (max.poll.records=50: ordered is "
        "capped at 50 x 5 polls/s = 250 events/s per consumer), 1000Mi pod JVM flags."
    )
