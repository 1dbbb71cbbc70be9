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
  decision reached the node), the container's process started, the pod Ready (kubelet's
  timestamps are whole seconds, so exec -> Ready is known to ±1 s);
- memory per instance: VmRSS summed over the processes of each pod's function container (not
  queue-proxy, not the pause container), their pids read from the container's memory cgroup on the
  host (cgroup v1, cgroupfs driver: ``/sys/fs/cgroup/memory/kubepods[/<qos>]/pod<uid>/<container
  id>/cgroup.procs``). The local side sums the same /proc figure over an instance's process tree.
  The cgroup's own ``memory.usage_in_bytes`` is not used: it also counts the page cache of the
  files the container read (its image layers), which no process's RSS counts, so it would not
  compare with the stand-ins' figure;
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
    """One function pod: when it was created, its process started, it became Ready (wall clock),
    and what finds its function container's processes (pod uid, container id)."""

    function: str
    created: float
    started: float | None = None
    ready: float | None = None
    name: str = ""
    uid: str = ""
    container_id: str = ""  # the function container's, without the runtime's "containerd://"
    running: bool = False  # in the last listing, its function container running


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/kubepods")
QOS_CLASSES = ("burstable", "besteffort", "")  # kubelet's cgroupfs layout; Guaranteed sits at the top


def container_cgroups(root: Path, pod_uid: str, container_id: str) -> list[Path]:
    """Where kubelet (cgroupfs driver) puts a container's cgroup, one candidate per QoS class."""
    return [(root / qos if qos else root) / f"pod{pod_uid}" / container_id for qos in QOS_CLASSES]


def container_id_of(value: str) -> str:
    """'containerd://abc…' -> 'abc…' (the id kubelet names the cgroup after)."""
    return value.split("://", 1)[-1]


def process_rss_mib(pid: int) -> float:
    """VmRSS of one process (MiB); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def cgroup_rss_mib(cgroup: Path) -> float | None:
    """VmRSS summed over the processes of a cgroup (None: no such cgroup)."""
    try:
        pids = [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return None
    return sum(process_rss_mib(pid) for pid in pids)


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
                items = json.loads(r.stdout)["items"]
                listed = {pod["metadata"]["uid"] for pod in items}
                for times in self.pods.values():
                    if times.uid not in listed:
                        times.running = False  # gone: its memory is no longer read
                for pod in items:
                    self._note_pod(pod)
            self._stop.wait(PODS_EVERY_S)

    def _note_pod(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        times = self.pods.setdefault(
            meta["uid"],
            PodTimes(
                meta["labels"]["serving.knative.dev/service"],
                _ts(meta["creationTimestamp"]),
                name=meta["name"],
                uid=meta["uid"],
            ),
        )
        times.running = False
        for container in status.get("containerStatuses", []):
            running = container.get("state", {}).get("running")
            if container.get("name") != "queue-proxy" and running:  # the function's own container
                times.started = _ts(running["startedAt"])
                times.container_id = container_id_of(container.get("containerID", ""))
                times.running = True
        for condition in status.get("conditions", []):
            if condition["type"] == "Ready" and condition["status"] == "True" and times.ready is None:
                times.ready = _ts(condition["lastTransitionTime"])

    def instance_memory(self) -> list[tuple[str, str, float]]:
        """Every pod that became Ready and still runs its function container: that container's RSS."""
        found = []
        for pod in list(self.pods.values()):
            if not (pod.running and pod.ready is not None and pod.container_id):
                continue
            for cgroup in container_cgroups(CGROUP_MEMORY, pod.uid, pod.container_id):
                mib = cgroup_rss_mib(cgroup)
                if mib is not None:
                    found.append((pod.function, pod.name, mib))
                    break
        return found

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
        """Pods created in [t0, t_end]: process start (exec) -> Ready as ready_s, as the stand-in's
        exec -> ready; pod created -> Ready as pod_ready_s; process start in `reason`."""
        return [pod_cold_start(pod) for pod in sorted(self.pods.values(), key=lambda p: p.created)
                if t0 <= pod.created <= t_end]  # fmt: skip


def pod_cold_start(pod: PodTimes) -> ColdStart:
    """One pod as a cold start (see AutoscalerInstances.cold_starts)."""
    process = "-" if pod.started is None else f"process +{pod.started - pod.created:.0f} s"
    exec_at = pod.started if pod.started is not None else pod.created
    return ColdStart(
        function=pod.function,
        started_at=pod.created,
        ready_s=None if pod.ready is None else max(0.0, pod.ready - exec_at),
        first_request_wait_s=None,
        reason=f"pod ({process})",
        pod_ready_s=None if pod.ready is None else pod.ready - pod.created,
    )


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
