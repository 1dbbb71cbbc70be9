"""Where the demo reads instance counts and cold starts: the local stack, or a cluster.

- local: the activators' metrics in Prometheus (`autoscaler_actual_pods` / `autoscaler_desired_pods`
  per `service_name`, Knative's names) and the cold-start log `$RIPPLE_HOME/logs/cold-starts.jsonl`
  that the local activator appends one JSON line to per instance start;
- cluster: `kubectl get pods -l serving.knative.dev/service` in the namespace, read every couple
  of seconds (Knative does not log cold starts as events; the report says so).

Memory per instance (`MemorySampler`, every few seconds): VmRSS summed over the instance's
processes. Locally the instance's process tree, from the pid each activator's /status gives; on
the project's own cluster (loadtest/autoscale/cluster.py) the processes of the function's
container, from its cgroup on the host. Both are the same /proc figure over the same processes
(the function's, not the activator's or queue-proxy's), so the two sides compare.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import requests

from ripple_stack.components.functions import SERVING_SCRAPE_INTERVAL_S
from ripple_stack.stack import resident_mib

from .analysis import ColdStart, MemorySample, Series

# Instance states whose memory counts: started ones, until they are gone.
MEASURED_STATES = ("ready", "draining")


class Ticker:
    """Calls `tick` every `every_s` seconds in a daemon thread of its own, from start() to stop().
    A tick that raises one of `missable` is one missing reading (the next comes soon), not a failed
    run."""

    def __init__(
        self, name: str, tick: Callable[[], None], every_s: float, missable: tuple[type[Exception], ...]
    ) -> None:
        self.tick = tick
        self.every_s = every_s
        self.missable = missable
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(*self.missable):
                self.tick()
            self._stop.wait(self.every_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


class InstanceReader:
    """Ready (and desired, where known) instances per function over a time range."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def current(self) -> dict[str, float]:
        raise NotImplementedError

    def series(self, t0: float, t_end: float) -> tuple[dict[str, Series], dict[str, Series]]:
        """(ready, desired) series per function between t0 and t_end."""
        raise NotImplementedError

    def panic(self, t0: float, t_end: float) -> dict[str, Series]:
        """Panic mode (1/0) per function over time, where the reader knows it."""
        return {}

    def activator_buckets(self, t0: float, t_end: float) -> dict[str, dict[float, float]]:
        """Per function, the activator's request-latency histogram (ms, cumulative) of [t0, t_end]."""
        return {}

    def cold_starts(self, t0: float, t_end: float) -> list[ColdStart]:
        """Instance starts in [t0, t_end], where the reader sees them (the local log is read apart)."""
        return []

    def instance_memory(self) -> list[tuple[str, str, float]]:
        """(function, instance, RSS MiB) of every started instance now, where the reader can see it."""
        return []


class PrometheusInstances(InstanceReader):
    """The local activators export Knative's autoscaler gauges; Prometheus keeps their history,
    scraped every 2 s, and the series are read at that step, as the cluster's are.
    Each activator's /status (`status_urls`, per function) names its instances' pids."""

    def __init__(
        self,
        prometheus_url: str,
        step_s: float = SERVING_SCRAPE_INTERVAL_S,
        status_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.url = prometheus_url.rstrip("/")
        self.step_s = step_s
        self.status_urls = dict(status_urls or {})
        self._session = requests.Session()

    def instance_memory(self) -> list[tuple[str, str, float]]:
        found = []
        for function, url in self.status_urls.items():
            try:
                status = self._session.get(url, timeout=3).json()
            except (requests.RequestException, ValueError):
                continue  # that activator is restarting: the next reading comes in seconds
            for instance in status.get("instances", []):
                if instance.get("pid") and instance.get("state") in MEASURED_STATES:
                    found.append((function, instance["name"], resident_mib(int(instance["pid"]))))
        return found

    def _query(self, expression: str) -> list[dict]:
        response = self._session.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def current(self) -> dict[str, float]:
        return {
            item["metric"].get("service_name", "?"): float(item["value"][1])
            for item in self._query("max by (service_name) (autoscaler_actual_pods)")
        }

    def _range(self, expression: str, t0: float, t_end: float) -> dict[str, Series]:
        response = self._session.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expression, "start": t0, "end": t_end, "step": self.step_s},
            timeout=20,
        )
        response.raise_for_status()
        return {
            item["metric"].get("service_name", "?"): [(float(t), float(v)) for t, v in item["values"]]
            for item in response.json()["data"]["result"]
        }

    def series(self, t0: float, t_end: float) -> tuple[dict[str, Series], dict[str, Series]]:
        ready = self._range("max by (service_name) (autoscaler_actual_pods)", t0, t_end)
        desired = self._range("max by (service_name) (autoscaler_desired_pods)", t0, t_end)
        return ready, desired

    def panic(self, t0: float, t_end: float) -> dict[str, Series]:
        return self._range("max by (service_name) (autoscaler_panic_mode)", t0, t_end)

    def activator_buckets(self, t0: float, t_end: float) -> dict[str, dict[float, float]]:
        window = f"{max(1, round(t_end - t0))}s"
        response = self._session.get(
            f"{self.url}/api/v1/query",
            params={
                "query": "sum by (service_name, le) "
                f"(increase(activator_request_latencies_bucket[{window}]))",
                "time": t_end,
            },
            timeout=20,
        )
        response.raise_for_status()
        buckets: dict[str, dict[float, float]] = {}
        for item in response.json()["data"]["result"]:
            service = item["metric"].get("service_name", "?")
            buckets.setdefault(service, {})[float(item["metric"]["le"])] = float(item["value"][1])
        return buckets


class KubectlInstances(InstanceReader):
    """Ready pods per Knative Service, polled with kubectl (cluster mode)."""

    def __init__(self, namespace: str, interval_s: float = 2.0) -> None:
        if shutil.which("kubectl") is None:
            raise RuntimeError(
                "--cluster needs kubectl on PATH, logged in to the cluster (oc login / KUBECONFIG)"
            )
        self.namespace = namespace
        self.interval_s = interval_s
        self._readings: list[tuple[float, dict[str, float]]] = []
        missable = (subprocess.SubprocessError, ValueError, KeyError)
        self._ticker = Ticker("kubectl-instances", self._read, interval_s, missable)

    def current(self) -> dict[str, float]:
        output = subprocess.run(
            [
                "kubectl",
                "get",
                "pods",
                "-n",
                self.namespace,
                "-l",
                "serving.knative.dev/service",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
        counts: dict[str, float] = {}
        for pod in json.loads(output)["items"]:
            service = pod["metadata"]["labels"]["serving.knative.dev/service"]
            conditions = pod.get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            counts[service] = counts.get(service, 0.0) + (1.0 if ready else 0.0)
        return counts

    def _read(self) -> None:
        self._readings.append((time.time(), self.current()))

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def series(self, t0: float, t_end: float) -> tuple[dict[str, Series], dict[str, Series]]:
        functions = {name for _, counts in self._readings for name in counts}
        ready: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
        for t, counts in self._readings:
            if t0 <= t <= t_end:
                for name in functions:
                    ready[name].append((t, counts.get(name, 0.0)))
        return dict(ready), {}


class MemorySampler(Ticker):
    """Reads every instance's memory every `every_s` seconds in a thread of its own."""

    def __init__(self, read: Callable[[], list[tuple[str, str, float]]], every_s: float = 3.0) -> None:
        missable = (OSError, ValueError, KeyError, subprocess.SubprocessError)
        super().__init__("instance-memory", self._sample, every_s, missable)
        self.read = read
        self.samples: list[MemorySample] = []

    def _sample(self) -> None:
        now = time.time()
        for function, instance, mib in self.read():
            if mib > 0:  # 0: the process ended between listing and reading
                self.samples.append(MemorySample(now, function, instance, mib))


def read_cold_starts(path: Path, t0: float, t_end: float) -> list[ColdStart]:
    """The local activator's cold-start log lines that started within [t0, t_end]."""
    if not path.exists():
        return []
    starts = []
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
            started = _seconds(item["started_at"])
        except (ValueError, KeyError, TypeError):
            continue
        if t0 <= started <= t_end:
            starts.append(
                ColdStart(
                    function=str(item.get("function", "?")),
                    started_at=started,
                    ready_s=_optional(item.get("ready_s")),
                    first_request_wait_s=_optional(item.get("first_request_wait_s")),
                    reason=str(item.get("reason", "")),
                )
            )
    return starts


def wait_for_zero(
    reader: InstanceReader, functions: Sequence[str], timeout_s: float, say=print
) -> tuple[bool, float]:
    """Wait until every named function has no ready instance; (reached, seconds waited)."""
    started = time.monotonic()
    last_report = 0.0
    while True:
        try:
            counts = reader.current()
        except (requests.RequestException, subprocess.SubprocessError, ValueError, KeyError):
            counts = {}
        busy = {name: counts[name] for name in functions if counts.get(name, 0) > 0}
        waited = time.monotonic() - started
        if counts and not busy:
            return True, waited
        if waited >= timeout_s:
            return False, waited
        if waited - last_report >= 15:
            still = ", ".join(f"{name}={int(count)}" for name, count in busy.items())
            say(f"waiting for zero: {still or 'no readings yet'}")
            last_report = waited
        time.sleep(2)


def _seconds(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
