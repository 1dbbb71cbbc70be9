"""What every measurement of `make bench-peers` shares: private topics (created and deleted), one
measurement at a time with the stack's snapshot, wrk runs and their rows."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from loadtest.isolation import IsolationError, PrivateTopics
from ripple_stack.settings import Settings

from . import procs
from .build import Built
from .config import PeersConfig
from .report import Measurement

LUA = Path(__file__).resolve().parent / "peers.lua"


def loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


class Bench:
    def __init__(self, settings: Settings, config: PeersConfig, built: Built) -> None:
        self.settings, self.config, self.built = settings, config, built
        self.run_id = datetime.now(UTC).strftime("%Y%m%dt%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.run_dir = config.home / "run" / self.run_id
        self.bootstrap = settings.kafka_bootstrap
        # Private topics (loadtest/isolation.py): created here, all deleted by cleanup().
        self.private = PrivateTopics(self.bootstrap, client_id="ripple-bench-peers")
        self.results: list[Measurement] = []
        self.notes: list[str] = []
        self.context: list[str] = []

    # --- helpers -------------------------------------------------------------------------------

    def kafka_admin(self, call, what: str, patience: float = 120.0):
        """call(admin), retried with a fresh client while the shared broker restarts (others' tests do)."""
        try:
            return self.private.call(call, what, patience)
        except IsolationError as error:
            raise procs.PeerError(str(error)) from None

    def topic(self, purpose: str, partitions: int = 3) -> str:
        try:
            return self.private.create(f"ripple.peers.{self.run_id}.{purpose}", partitions)
        except IsolationError as error:
            raise procs.PeerError(str(error)) from None

    def cleanup(self) -> None:
        failure = self.private.delete_all()
        if failure:
            self.notes.append(failure)

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
