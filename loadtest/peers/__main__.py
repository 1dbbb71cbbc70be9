"""`make bench-peers`: ripple's event path side by side with its upstream peers, in one run.

    .venv/bin/python -m loadtest.peers          (PEERS_* settings: loadtest/peers/README.md)

Builds the peers from source (cached per tag, loadtest/peers/build.py), then on the local stack's
Kafka, one thing at a time:
  1. ingress, wrk with the same order event: ripple's gateway vs Knative's Kafka broker receiver
     vs the Strimzi Kafka Bridge (single events), and batches (gateway batch vs bridge records);
  2. dispatch of a pre-filled backlog to the same trivial sink (a private nginx `return 202`):
     ripple's KafkaSource dispatcher vs Knative's dispatcher-loom, unordered and ordered;
  3. Kafka's producer ceiling: ProducerPerformance, acks=all.
Prints one markdown table (plus details) and writes it to loadtest/reports/peers-<time>.md.
Only private topics, consumer groups, ports and processes are used; the shared stack is read,
never stopped. The peers are stopped and the topics deleted at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from loadtest.gateway.run import run_wrk, token
from loadtest.measure import free_port
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, ConfigError, Settings, load_settings
from ripple_stack.stack import Stack

from . import procs
from .build import BuildError, Built, build_all, kafka_version
from .config import PeersConfig, load_config
from .report import Measurement, render

LUA = Path(__file__).resolve().parent / "peers.lua"


def loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


class Bench:
    def __init__(self, settings: Settings, config: PeersConfig, built: Built) -> None:
        self.settings, self.config, self.built = settings, config, built
        self.run_id = datetime.now(UTC).strftime("%Y%m%dt%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.run_dir = config.home / "run" / self.run_id
        self.bootstrap = settings.kafka_bootstrap
        self.admin: KafkaAdminClient | None = None
        self.topics: list[str] = []
        self.results: list[Measurement] = []
        self.notes: list[str] = []
        self.context: list[str] = []

    # --- helpers -------------------------------------------------------------------------------

    def kafka_admin(self, call, what: str, patience: float = 120.0):
        """call(admin), retried with a fresh client while the shared broker restarts (others' tests do)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                if self.admin is None:
                    self.admin = KafkaAdminClient(
                        bootstrap_servers=self.bootstrap, client_id="ripple-bench-peers"
                    )
                return call(self.admin)
            except KafkaError as error:
                with contextlib.suppress(Exception):
                    self.admin.close()
                self.admin = None
                if time.monotonic() > deadline:
                    raise procs.PeerError(f"Kafka did not answer ({what}): {error}") from None
                time.sleep(3)

    def topic(self, purpose: str, partitions: int = 3) -> str:
        name = f"ripple.peers.{self.run_id}.{purpose}"

        def create(admin: KafkaAdminClient) -> None:
            # a retry may find the topic the broker created from the first attempt
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])

        self.kafka_admin(create, f"create topic {name}")
        self.topics.append(name)
        return name

    def cleanup(self) -> None:
        if self.topics:
            try:
                self.kafka_admin(lambda admin: admin.delete_topics(self.topics), "delete topics", 60)
            except procs.PeerError as error:
                self.notes.append(f"could not delete topics {', '.join(self.topics)}: {error}")
        if self.admin is not None:
            self.admin.close()

    def measure(self, run: Callable[[], Measurement]) -> None:
        """run() once, again if the shared Kafka broker restarted meanwhile (others' failure tests)."""
        for attempt in (1, 2):
            mark = procs.kafka_broker_identity()
            try:
                measurement = run()
            except procs.PeerError:
                if attempt == 2 or procs.kafka_broker_identity() == mark:
                    raise
                print("  failed while Kafka restarted; measuring again", flush=True)
                self.kafka_admin(lambda admin: admin.list_topics(), "wait for Kafka")
                time.sleep(5)
                continue
            if procs.kafka_broker_identity() == mark:
                break
            measurement = replace(
                measurement,
                disturbed=True,
                extra="; ".join(
                    filter(None, [measurement.extra, "Kafka restarted during this run (not by it)"])
                ),
            )
            if attempt == 1:
                print(f"  {measurement.what}: Kafka restarted during the run; measuring again", flush=True)
                self.notes.append(
                    f"{measurement.what} was measured twice: Kafka restarted during the first run."
                )
                self.kafka_admin(lambda admin: admin.list_topics(), "wait for Kafka")
                time.sleep(5)
        self.results.append(measurement)
        print(f"  {measurement.what}: {measurement.summary()}", flush=True)

    def snapshot(self, section: str) -> None:
        busy = procs.busiest_processes()
        others = ", ".join(f"{procs.short_command(cmd)} {pct:.0f}%" for pct, cmd in busy)
        self.context.append(f"before {section}: load average {loadavg()}; busiest processes (3 s): {others}")

    def wrk(self, url_path: str, base: str, mode: str, batch: int, seconds: int) -> dict:
        env = os.environ | {
            "MODE": mode,
            "BATCH": str(batch),
            "PATH_": url_path,
            "RUN_ID": f"p{time.time_ns()}",
        }
        command = [
            "wrk",
            f"-t{self.config.threads}",
            f"-c{self.config.connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            base,
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise procs.PeerError(f"wrk failed against {base}{url_path}:\n{result.stdout}\n{result.stderr}")
        return json.loads(line.removeprefix("RESULT "))

    def wrk_measurement(
        self, key: str, what: str, result: dict, batch: int, cpu_s: float | None = None
    ) -> Measurement:
        seconds = result["duration_us"] / 1e6
        bad = result["non_2xx"] + result["socket_errors"] + result.get("record_errors", 0)
        ok = result["requests"] - result["non_2xx"] - result.get("record_errors", 0)
        return Measurement(
            key=key,
            what=what,
            rate=result["requests"] / seconds,
            events_per_s=ok * batch / seconds,
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            errors=bad,
            cpu_ms_per_event=(cpu_s * 1000 / (ok * batch)) if cpu_s is not None and ok else None,
            load=loadavg(),
        )

    # --- 1. ingress ----------------------------------------------------------------------------

    def ingress(self) -> None:
        self.snapshot("ingress")
        config = self.config
        wrk_args = argparse.Namespace(
            threads=config.threads, connections=config.connections, duration=config.seconds
        )
        warm_args = argparse.Namespace(
            threads=config.threads, connections=config.connections, duration=config.warmup
        )
        access_token = token(self.settings, load_secrets(self.settings))
        gateway = self.settings.gateway_url
        topic = self.topic("ingress")
        print(f"ingress: wrk -t{config.threads} -c{config.connections} -d{config.seconds}s", flush=True)

        def ripple(batch: int) -> Measurement:
            gateway_wrk(gateway, batch, warm_args, access_token)
            key = "gateway-single" if batch == 1 else "gateway-batch"
            what = "ripple gateway, binary event" if batch == 1 else f"ripple gateway, batch of {batch}"
            return self.wrk_measurement(key, what, gateway_wrk(gateway, batch, wrk_args, access_token), batch)

        self.measure(lambda: ripple(1))

        receiver = procs.start_receiver(
            self.built.receiver_jar,
            config.java21,
            self.run_dir / "receiver",
            config.receiver_port,
            self.bootstrap,
            topic,
        )
        try:
            base = f"http://127.0.0.1:{config.receiver_port}"

            def knative() -> Measurement:
                self.wrk("/peer/bench", base, "binary", 1, config.warmup)
                before = procs.tree_cpu_seconds(receiver.pid)
                result = self.wrk("/peer/bench", base, "binary", 1, config.seconds)
                cpu = procs.tree_cpu_seconds(receiver.pid) - before
                return self.wrk_measurement(
                    "knative-single", "Knative broker receiver, binary event", result, 1, cpu
                )

            self.measure(knative)
        finally:
            receiver.stop()

        bridge = procs.start_bridge(
            self.built.bridge_home, config.java17, self.run_dir / "bridge", config.bridge_port, self.bootstrap
        )
        try:
            base = f"http://127.0.0.1:{config.bridge_port}"

            def strimzi(batch: int) -> Measurement:
                self.wrk(f"/topics/{topic}", base, "bridge", batch, config.warmup)
                before = procs.tree_cpu_seconds(bridge.pid)
                result = self.wrk(f"/topics/{topic}", base, "bridge", batch, config.seconds)
                cpu = procs.tree_cpu_seconds(bridge.pid) - before
                key = "bridge-single" if batch == 1 else "bridge-batch"
                what = f"Strimzi bridge, {batch} record{'s' if batch > 1 else ''}/request"
                return self.wrk_measurement(key, what, result, batch, cpu)

            for batch in (1, config.batch):
                self.measure(lambda b=batch: strimzi(b))
        finally:
            bridge.stop()

        self.measure(lambda: ripple(config.batch))
        served_by = sorted(
            {
                procs.short_command(procs.command_line(pid))
                for pid in procs.listening_pids(self.settings.ports["gateway"])
            }
        )
        self.notes.append(f"{gateway} was served by: {', '.join(served_by) or 'nothing (?)'}")
        self.notes.append(
            "ripple's gateway is the stack's (its events go to the stack's topics and are consumed by "
            "the stack's dispatchers); the peers write to a private 3-partition topic. All producers: "
            "acks=all, idempotent, linger 5 ms. CPU ms/event is the peer JVM's own (from /proc); the "
            "gateway is not this benchmark's process, so none is given for it."
        )

    # --- 2. dispatch ---------------------------------------------------------------------------

    def prefill(self, topic: str, count: int, prefix: str) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
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
        self, topic: str, group: str, sink_url: str, ordered: bool, scratch: Path
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
                        "bootstrapServers": [self.bootstrap],
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
            self.run_dir / f"ripple-dispatcher-{mode}.log",
        )

    def measure_dispatch(self, key: str, what: str, start, sink: procs.Sink, total: int) -> Measurement:
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
                    self.notes.append(
                        f"{what}: the dispatcher exited after {delivered} deliveries ({process.log})"
                    )
                    break
                if time.monotonic() > deadline:
                    self.notes.append(
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

    def dispatch(self) -> None:
        self.snapshot("dispatch")
        config = self.config
        total = config.dispatch_events
        topic = self.topic("dispatch")
        print(f"dispatch: pre-filling {topic} with {total} events…", flush=True)
        self.prefill(topic, total, f"peers-{self.run_id}")
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
                        group = f"ripple-peers-{self.run_id}-ripple-{m}-{uuid.uuid4().hex[:6]}"
                        return self.ripple_dispatcher(topic, group, sink.url(), o, Path(scratch))

                    def knative(o: bool = ordered, m: str = mode) -> procs.Process:
                        return procs.start_knative_dispatcher(
                            self.built.dispatcher_jar,
                            config.java21,
                            self.run_dir / f"knative-dispatcher-{m}",
                            self.bootstrap,
                            topic,
                            f"ripple-peers-{self.run_id}-knative-{m}-{uuid.uuid4().hex[:6]}",
                            sink.url(),
                            o,
                        )

                    self.measure(
                        lambda m=mode, start=ripple: self.measure_dispatch(
                            f"ripple-{m}", f"ripple KafkaSource dispatcher, {m}", start, sink, total
                        )
                    )
                    self.measure(
                        lambda m=mode, start=knative: self.measure_dispatch(
                            f"knative-{m}", f"Knative dispatcher-loom, {m}", start, sink, total
                        )
                    )
        finally:
            sink.stop()
            if not had_healthy:
                with contextlib.suppress(OSError):
                    healthy.unlink()
        max_in_flight = os.environ.get("RIPPLE_DISPATCHER_MAX_IN_FLIGHT", "100 (default)")
        self.notes.append(
            f"dispatch: {total} binary-mode order events (3 partitions, keyed by order id) pre-filled once; "
            "each dispatcher reads them with its own new consumer group into the same nginx `return 202` "
            "(1 worker). deliveries/s and CPU ms/event (process tree, /proc) are "
            "measured once warm, from the first 10 % of the backlog to the last event; events/s is "
            "events / (process start -> done), with start-up and group join. "
            "ripple: RIPPLE_DISPATCHER_MAX_IN_FLIGHT="
            f"{max_in_flight}; Knative: upstream KafkaSource settings (max.poll.records=50: ordered is "
            "capped at 50 x 5 polls/s = 250 events/s per consumer), 1000Mi pod JVM flags."
        )

    # --- 3. Kafka's producer ceiling -----------------------------------------------------------

    def producer(self) -> None:
        self.snapshot("producer")
        config = self.config
        topic = self.topic("perf")
        libs = self.settings.dist_dir / "kafka-libs"
        print(
            f"producer: ProducerPerformance {config.perf_records} x {config.record_size} B, acks=all",
            flush=True,
        )
        command = [
            str(config.java17 / "bin" / "java"),
            "-Xmx512m",
            "-cp",
            f"{libs}/*:{self.built.kafka_tools_jar}",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(config.perf_records),
            "--record-size",
            str(config.record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={self.bootstrap}",
            "acks=all",
        ]

        def run() -> Measurement:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            final = [
                line for line in result.stdout.splitlines() if f"{config.perf_records} records sent" in line
            ]
            if result.returncode != 0 or not final:
                raise procs.PeerError(
                    f"ProducerPerformance failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                )
            # "1000000 records sent, 202977.1 records/sec (44.52 MB/sec), 120.10 ms avg latency, ...,
            #  50 ms 50th, 180 ms 95th, 210 ms 99th, 230 ms 99.9th."
            parts = [p.strip() for p in final[-1].split(",")]
            rate = float(parts[1].split()[0])
            p50 = next(float(p.split()[0]) for p in parts if p.endswith("50th"))
            p99 = next(float(p.split()[0]) for p in parts if p.endswith("99th"))
            return Measurement(
                key="kafka-producer",
                what=f"Kafka ProducerPerformance, acks=all, {config.record_size} B",
                rate=rate,
                events_per_s=rate,
                p50_ms=p50,
                p99_ms=p99,
                errors=0,
                cpu_ms_per_event=None,
                load=loadavg(),
                extra=f"kafka-tools {kafka_version()}, default producer settings, 1 producer",
            )

        self.measure(run)


def gateway_wrk(url: str, batch: int, args: argparse.Namespace, access_token: str) -> dict:
    """loadtest/gateway/run.py's wrk run, once the gateway answers (others restart it now and then)."""
    deadline = time.monotonic() + 90
    while procs.http_status(url + "/healthz") is None:
        if time.monotonic() > deadline:
            raise procs.PeerError(f"ripple's gateway at {url} did not answer for 90 s")
        time.sleep(2)
    try:
        return run_wrk(url, batch, args, access_token)
    except SystemExit as error:  # run_wrk exits with wrk's output when wrk fails
        raise procs.PeerError(str(error)) from None


@contextmanager
def paused(settings: Settings, components: tuple[str, ...], notes: list[str]) -> Iterator[None]:
    """Stop the named stack components for the body, and always start them again."""
    stack = Stack(settings, lambda line: print(line, flush=True))
    stopped = []
    try:
        for name in components:
            stack.stop(name)
            stopped.append(name)
        notes.append(f"paused while ingress was measured (PEERS_PAUSE): {', '.join(stopped)}")
        yield
    finally:
        for name in reversed(stopped):
            stack.start(name)


def main() -> int:
    try:
        settings = load_settings()
        config = load_config(settings)
        for tool in ("wrk", "nginx"):
            if not any((Path(d) / tool).exists() for d in [*os.environ["PATH"].split(":"), "/usr/sbin"]):
                raise ConfigError(
                    f"{tool} is missing: run `make up` (it installs the Debian package) and rerun."
                )
        started = time.monotonic()
        built = build_all(config)
        print(f"peers ready ({time.monotonic() - started:.0f} s)", flush=True)
    except (ConfigError, BuildError) as error:
        print(f"bench-peers: {error}", file=sys.stderr)
        return 2
    bench = Bench(settings, config, built)
    sections = [s for s in ("ingress", "dispatch", "producer") if not config.only or s in config.only]
    load_start = loadavg()
    failed = []
    try:
        for section in sections:
            try:
                if section == "ingress" and config.pause:
                    with paused(settings, config.pause, bench.notes):
                        bench.ingress()
                else:
                    getattr(bench, section)()
            except Exception as error:  # the report of the other sections is still worth having
                failed.append(section)
                if not isinstance(error, procs.PeerError):
                    traceback.print_exc()
                bench.notes.append(f"{section} failed: {type(error).__name__}: {error}")
                print(f"bench-peers: {section} failed: {error}", file=sys.stderr)
    finally:
        bench.cleanup()
    markdown = render(bench, built, config, load_start, loadavg())
    reports = REPO_ROOT / "loadtest" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"peers-{bench.run_id}.md"
    path.write_text(markdown)
    print()
    print(markdown)
    print(f"report: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
