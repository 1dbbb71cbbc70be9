"""The autoscale demo against the project's own Kubernetes + Knative (``infra/cluster``, issue 18).

`make cluster-demo` (``python -m loadtest.autoscale --ripple-cluster``) runs the same step and
spike as the local demo, through the cluster's nginx (``RIPPLE_CLUSTER_EDGE_PORT``, 17881) into
the real Knative gateway, and writes the same report and plot. What differs is only where the
numbers come from, and each source is the one real Knative has:

- instances: the real autoscaler's own gauges (``autoscaler_actual_pods``,
  ``autoscaler_desired_pods``, ``autoscaler_panic_mode`` per Knative Service; the local activator
  exports the same names), scraped from its pod every 2 s by a small Python loop inside the
  cluster's network namespace (pod addresses are reachable only there; the network rule);
- cold starts: the functions' pods, read with kubectl every 3 s: pod created (the autoscaler's
  decision reached the node), the container's process started, the pod Ready;
- stored once: the cluster's PostgreSQL through a loopback relay made for the run (the same kind
  the cluster uses for its apiserver), so the demo's own checks run unchanged;
- tokens: the cluster's Keycloak, fetched inside the namespace (``ripple_deploy.token``), so the
  token's issuer is the address the gateway trusts;
- Kafka lag is not probed: the cluster's Kafka advertises its address inside the namespace only.

Settings: ``RIPPLE_CLUSTER_DEMO_PG_PORT`` (17543) is the relay's loopback port.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtest.scenarios.shop import TokenSource

from .analysis import ColdStart, Series
from .observe import InstanceReader

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / "infra" / "cluster"
SCRAPE_EVERY_S = 2.0
PODS_EVERY_S = 3.0
GAUGES = ("autoscaler_actual_pods", "autoscaler_desired_pods", "autoscaler_panic_mode")

# Runs inside the namespace: the activator's request-latency buckets per Knative Service (summed
# over revisions and response codes), one JSON object {service: {le: count}}.
ACTIVATOR_BUCKETS = r"""
import json, re, sys, urllib.request
url, namespace = sys.argv[1], sys.argv[2]
out = {}
for raw in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
    if not raw.startswith("activator_request_latencies_bucket{"):
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', raw[raw.index("{"):raw.rindex("}")]))
    if labels.get("namespace_name") != namespace:
        continue
    per = out.setdefault(labels.get("service_name", "?"), {})
    per[labels["le"]] = per.get(labels["le"], 0.0) + float(raw.rsplit(" ", 1)[1])
print(json.dumps(out))
"""

# Runs inside the namespace: print one JSON line per scrape of the autoscaler's /metrics,
# {"t": wall clock, "<gauge>": {service: max over the service's revisions}}.
SCRAPER = r"""
import json, re, sys, time, urllib.request
url, namespace, every, gauges = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")
line = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')
while True:
    started = time.time()
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        text = ""
    out = {"t": started}
    for raw in text.splitlines():
        m = line.match(raw)
        if not m or m.group(1) not in gauges:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get("namespace_name") != namespace:
            continue
        per = out.setdefault(m.group(1), {})
        service = labels.get("service_name", "?")
        per[service] = max(per.get(service, 0.0), float(m.group(3)))
    if text:
        print(json.dumps(out), flush=True)
    time.sleep(max(0.0, every - (time.time() - started)))
"""


def cluster_modules() -> Any:
    """ripple_cluster (infra/cluster's package), importable from here."""
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    import ripple_cluster.backing
    import ripple_cluster.node
    import ripple_cluster.ripple_deploy
    import ripple_cluster.settings

    return ripple_cluster


def pod_ip(settings: Any, namespace: str, app: str) -> str:
    from ripple_cluster.addons import kubectl

    r = kubectl(settings, "get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json")
    for pod in json.loads(r.stdout)["items"]:
        if pod.get("status", {}).get("podIP") and pod["status"].get("phase") == "Running":
            return pod["status"]["podIP"]
    raise RuntimeError(f"no running {app} pod in {namespace}: is the cluster up (make cluster-up)?")


class ClusterTokens(TokenSource):
    """Access tokens of the publisher client from the cluster's Keycloak (fetched in the namespace)."""

    def __init__(self, settings: Any, lifetime_s: float = 240.0) -> None:
        super().__init__(token_url="(cluster Keycloak)", client_id="ripple-publisher", client_secret="")
        self.settings = settings
        self.lifetime_s = lifetime_s  # under Keycloak's 300 s default, so a token never expires in use

    def _fetch(self) -> None:
        from ripple_cluster import ripple_deploy

        self._token = ripple_deploy.token(self.settings)
        self._expires_at = time.monotonic() + self.lifetime_s


@dataclass
class PodTimes:
    """One function pod: when it was created, its process started, it became Ready (wall clock)."""

    function: str
    created: float
    started: float | None = None
    ready: float | None = None


class AutoscalerInstances(InstanceReader):
    """Ready (actual), desired and panic per function from the real autoscaler; pods from kubectl."""

    def __init__(self, settings: Any, namespace: str = "ripple") -> None:
        self.settings = settings
        self.namespace = namespace
        self.readings: list[dict[str, Any]] = []
        self.pods: dict[str, PodTimes] = {}
        self._process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._activator_at_start: dict[str, dict[float, float]] = {}

    def _activator_scrape(self) -> dict[str, dict[float, float]]:
        from ripple_cluster import backing

        url = f"http://{pod_ip(self.settings, 'knative-serving', 'activator')}:9090/metrics"
        code = f"import sys; sys.argv = ['a', {url!r}, {self.namespace!r}]; exec({ACTIVATOR_BUCKETS!r})"
        r = backing.ns_python(self.settings, code, 60)
        if r.returncode != 0:
            return {}
        return {
            service: {float(le): count for le, count in buckets.items()}
            for service, buckets in json.loads(r.stdout).items()
        }

    def activator_buckets(self, t0: float, t_end: float) -> dict[str, dict[float, float]]:
        """The increase between the scrape at start() and now (the demo asks right after its run)."""
        from .analysis import bucket_increase

        after = self._activator_scrape()
        return {
            service: bucket_increase(self._activator_at_start.get(service, {}), buckets)
            for service, buckets in after.items()
        }

    def start(self) -> None:
        from ripple_cluster import node

        self._activator_at_start = self._activator_scrape()
        url = f"http://{pod_ip(self.settings, 'knative-serving', 'autoscaler')}:9090/metrics"
        command = [
            sys.executable,
            "-u",
            "-c",
            SCRAPER,
            url,
            self.namespace,
            str(SCRAPE_EVERY_S),
            ",".join(GAUGES),
        ]
        self._process = subprocess.Popen(
            node.in_ns(self.settings, *command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for target in (self._read_scrapes, self._poll_pods):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read_scrapes(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            with contextlib.suppress(ValueError):
                self.readings.append(json.loads(line))

    def _poll_pods(self) -> None:
        from ripple_cluster.addons import kubectl

        while not self._stop.is_set():
            with contextlib.suppress(subprocess.SubprocessError, ValueError, KeyError, SystemExit):
                r = kubectl(
                    self.settings, "get", "pods", "-n", self.namespace, "-l", "serving.knative.dev/service",
                    "-o", "json", check=False,
                )  # fmt: skip
                for pod in json.loads(r.stdout)["items"]:
                    self._note_pod(pod)
            self._stop.wait(PODS_EVERY_S)

    def _note_pod(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        times = self.pods.setdefault(
            meta["uid"],
            PodTimes(meta["labels"]["serving.knative.dev/service"], _ts(meta["creationTimestamp"])),
        )
        for container in status.get("containerStatuses", []):
            running = container.get("state", {}).get("running")
            if container.get("name") != "queue-proxy" and running:  # the function's own container
                times.started = _ts(running["startedAt"])
        for condition in status.get("conditions", []):
            if condition["type"] == "Ready" and condition["status"] == "True":
                times.ready = _ts(condition["lastTransitionTime"])

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)

    def current(self) -> dict[str, float]:
        if not self.readings:
            raise ValueError("no scrape of the autoscaler yet")
        return dict(self.readings[-1].get("autoscaler_actual_pods", {}))

    def _series(self, gauge: str, t0: float, t_end: float) -> dict[str, Series]:
        functions = {name for reading in self.readings for name in reading.get(gauge, {})}
        series: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
        for reading in self.readings:
            if t0 <= reading["t"] <= t_end:
                for name in functions:
                    series[name].append((reading["t"], reading.get(gauge, {}).get(name, 0.0)))
        return dict(series)

    def series(self, t0: float, t_end: float) -> tuple[dict[str, Series], dict[str, Series]]:
        return self._series(GAUGES[0], t0, t_end), self._series(GAUGES[1], t0, t_end)

    def panic(self, t0: float, t_end: float) -> dict[str, Series]:
        return self._series(GAUGES[2], t0, t_end)

    def cold_starts(self, t0: float, t_end: float) -> list[ColdStart]:
        """Pods created in [t0, t_end]: pod start -> Ready as ready_s; process start in `reason`."""
        starts = []
        for pod in sorted(self.pods.values(), key=lambda p: p.created):
            if t0 <= pod.created <= t_end:
                process = "-" if pod.started is None else f"process +{pod.started - pod.created:.0f} s"
                starts.append(
                    ColdStart(
                        function=pod.function,
                        started_at=pod.created,
                        ready_s=None if pod.ready is None else pod.ready - pod.created,
                        first_request_wait_s=None,
                        reason=f"pod ({process})",
                    )
                )
        return starts


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class ClusterTarget:
    """Where the demo finds the cluster's pieces; `open()` makes the relay and readers for one run."""

    settings: Any
    edge_url: str
    postgres_dsn: str
    pg_port: int
    relay_names: list[str] = field(default_factory=list)


@contextlib.contextmanager
def cluster_target() -> Iterator[ClusterTarget]:
    """The running cluster with ripple deployed (make cluster-up cluster-deploy), and a loopback
    relay to its PostgreSQL for the run's checks (stopped afterwards)."""
    modules = cluster_modules()
    settings = modules.settings.load()
    backing, node, ripple_deploy = modules.backing, modules.node, modules.ripple_deploy
    if not node.netns_exists(settings):
        raise RuntimeError("the cluster is not up: make cluster-up cluster-deploy first")
    b = backing.load(settings)
    password = backing.load_secrets(b)["RIPPLE_POSTGRES_PASSWORD"]
    port = int(os.environ.get("RIPPLE_CLUSTER_DEMO_PG_PORT", "17543"))
    relay = node.Relay("demo-postgres", port, f"{b.ip}:{b.postgres_port}")
    procs = relay.procs(settings)
    for proc in procs:
        node.start(settings, proc)
    dsn = f"host=127.0.0.1 port={port} user=ripple password={password} dbname=ripple connect_timeout=10"
    try:
        yield ClusterTarget(settings, ripple_deploy.edge_url(settings), dsn, port, [p.name for p in procs])
    finally:
        node.stop_many(settings, [p.name for p in procs])
