"""3. Kafka's producer ceiling on this machine: ProducerPerformance, acks=all."""

from __future__ import annotations

import subprocess

from . import procs
from .bench import Bench, loadavg
from .build import kafka_version
from .report import Measurement


def run(bench: Bench) -> None:
    bench.snapshot("producer")
    config = bench.config
    topic = bench.topic("perf")
    libs = bench.settings.dist_dir / "kafka-libs"
    print(
        f"producer: ProducerPerformance {config.perf_records} x {config.record_size} B, acks=all",
        flush=True,
    )
    command = [
        str(config.java17 / "bin" / "java"),
        "-Xmx512m",
        "-cp",
        f"{libs}/*:{bench.built.kafka_tools_jar}",
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
        f"bootstrap.servers={bench.bootstrap}",
        "acks=all",
    ]

    def run() -> Measurement:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        final = [line for line in result.stdout.splitlines() if f"{config.perf_records} records sent" in line]
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

    bench.measure(run)
