"""cluster-up, cluster-down and cluster-status: bring the node up in order, take it down, report it.

Order (each wave waits for the one before): the relays, the registry, etcd and containerd; the
apiserver (ready on /readyz); the images the node needs (static base, pause, CoreDNS); the
controller-manager, scheduler, kubelet, kube-proxy and the KIngress (node Ready); CoreDNS; Knative
Serving (its deployments Available); Knative Eventing with the channel-based Broker
(``eventing.py``; ``--no-eventing`` leaves it out). A second ``cluster-up`` finds everything
running and only re-applies the manifests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time

from . import addons, components, eventing, images, node
from .build import steps
from .settings import Settings


def _require(s: Settings) -> None:
    if os.geteuid() != 0:
        raise SystemExit(
            "ripple-cluster: the cluster needs root (network namespace, cgroups, mounts); run as root."
        )
    missing = [o for st in steps(s) for o in st.outputs if not (s.bin / o).exists()]
    if missing:
        raise SystemExit(
            f"ripple-cluster: not built yet: {', '.join(missing)}. Run `make cluster-build` first."
        )
    for tool in ("nsenter", "socat", "ip", "iptables", "go"):
        if shutil.which(tool) is None:
            pkg = {"nsenter": "util-linux", "ip": "iproute2"}.get(tool, tool)
            raise SystemExit(f"ripple-cluster: {tool} is missing: apt-get install {pkg}")


def _start_wave(s: Settings, procs: list[node.Proc]) -> None:
    """Start a wave; a process that dies at once (e.g. a relay whose port an old connection still
    holds) is restarted a few times before giving up with its log."""
    for p in procs:
        node.start(s, p)
    for _attempt in range(5):
        time.sleep(1)
        dead = [p for p in procs if not node.pid_of(s, p.name)]
        if not dead:
            return
        for p in dead:
            node.start(s, p)
    names = ", ".join(p.name for p in dead)
    raise SystemExit(f"ripple-cluster: {names} keeps exiting; see {s.logs}/<name>.log")


def _apiserver_ready(s: Settings) -> bool:
    r = addons.kubectl(s, "get", "--raw", "/readyz", check=False)
    return r.returncode == 0 and r.stdout.strip() == "ok"


def node_ready(s: Settings) -> bool | None:
    r = addons.kubectl(s, "get", "node", s.node_name, "-o", "json", check=False)
    if r.returncode != 0:
        return None
    conds = json.loads(r.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def up(s: Settings, knative: bool = True, with_eventing: bool = True) -> int:
    _require(s)
    t0 = time.monotonic()
    components.write_configs(s)
    node.netns_up(s)
    # ripple deployed before (make cluster-deploy): its Kafka, PostgreSQL, Keycloak and mail sink
    # start with the node, so its pods do not crash-loop on a restart before they are back.
    from . import backing

    backing.start_if_deployed(s)
    waves = components.processes(s)
    _start_wave(s, waves[0])
    node.wait_ready("containerd", lambda: (s.run / "containerd.sock").exists(), 60, s.logs / "containerd.log")
    _start_wave(s, waves[1])
    node.wait_ready(
        "kube-apiserver", lambda: _apiserver_ready(s), s.ready_timeout, s.logs / "kube-apiserver.log"
    )
    print(f"  apiserver   ready ({time.monotonic() - t0:.0f} s)", flush=True)
    refs = images.ensure_all(s)
    _start_wave(s, waves[2])
    node.wait_ready(
        f"node {s.node_name}", lambda: node_ready(s) is True, s.ready_timeout, s.logs / "kubelet.log"
    )
    print(f"  node        Ready ({time.monotonic() - t0:.0f} s)", flush=True)
    addons.install_coredns(s, refs["coredns"])
    addons.wait_deployments(s, "kube-system", ["coredns"], s.ready_timeout)
    print(f"  coredns     Available ({time.monotonic() - t0:.0f} s)", flush=True)
    if knative:
        addons.install_serving(s)
        addons.install_kingress_service(s)
        addons.wait_deployments(
            s,
            "knative-serving",
            ["controller", "webhook", "activator", "autoscaler"],
            max(s.ready_timeout, 300),
        )
        print(f"  knative     Serving Available ({time.monotonic() - t0:.0f} s)", flush=True)
        if with_eventing:
            eventing.up(s)
    took = time.monotonic() - t0
    (s.home / "up-time.txt").write_text(f"{took:.1f}\n")
    print(
        f"ripple-cluster: up in {took:.0f} s. kubectl: {s.bin}/kubectl --kubeconfig {s.kubeconfig}\n"
        f"  ingress: http://127.0.0.1:{s.ingress_port} (Host: <service>.<namespace>.{s.domain})"
    )
    return 0


def down(s: Settings) -> int:
    from . import ripple_deploy

    # ripple's nginx and the cluster's Kafka, PostgreSQL and Keycloak (ripple_deploy), if started.
    ripple_deploy.down(s)
    procs = [p for wave in components.processes(s) for p in wave]
    by_name = {p.name: p for p in procs}
    first = ["kingress", "kube-proxy", "kubelet", "kube-controller-manager", "kube-scheduler"]
    node.stop_many(s, first)
    # Pods and their shims: processes our kubelet and containerd made (cgroup and socket path say so).
    for pid in node.kubepods_pids() + node.shim_pids(s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    node.stop_many(s, [n for n in by_name if n not in first])
    time.sleep(0.5)
    node.unmount_under(s.home)
    # Pod network namespaces left by containerd (only those no process uses any more).
    for line in subprocess.run(["ip", "netns", "list"], text=True, capture_output=True).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("cni-"):
            pids = subprocess.run(
                ["ip", "netns", "pids", name], text=True, capture_output=True
            ).stdout.strip()
            if not pids:
                subprocess.run(["ip", "netns", "del", name], check=False)
    node.netns_down(s)
    print("ripple-cluster: down (state kept under " + str(s.home) + "; delete it to start from scratch)")
    return 0


def status(s: Settings, as_json: bool = False) -> int:
    rows = []
    total = 0
    for wave in components.processes(s):
        for p in wave:
            pid = node.pid_of(s, p.name)
            rss = sum(node.rss_kib(x) for x in node.descendants(pid)) if pid else 0
            total += rss
            rows.append(
                {"component": p.name, "pid": pid, "running": bool(pid), "rss_mib": round(rss / 1024, 1)}
            )
    from . import ripple_deploy

    # ripple's Kafka, PostgreSQL, Keycloak and nginx (make cluster-deploy), listed when running.
    for name in ripple_deploy.PROCESSES:
        pid = node.pid_of(s, name)
        if pid:
            rss = sum(node.rss_kib(x) for x in node.descendants(pid))
            total += rss
            rows.append({"component": name, "pid": pid, "running": True, "rss_mib": round(rss / 1024, 1)})
    shims = sum(node.rss_kib(p) for p in node.shim_pids(s))
    pods = sum(node.rss_kib(p) for p in node.kubepods_pids())
    ready = node_ready(s) if node.pid_of(s, "kube-apiserver") else None
    pods_list = []
    if ready is not None:
        r = addons.kubectl(s, "get", "pods", "-A", "-o", "json", check=False)
        if r.returncode == 0:
            for item in json.loads(r.stdout)["items"]:
                st = item.get("status", {})
                cs = st.get("containerStatuses", [])
                pods_list.append(
                    {
                        "namespace": item["metadata"]["namespace"],
                        "name": item["metadata"]["name"],
                        "phase": st.get("phase"),
                        "ready": f"{sum(c.get('ready', False) for c in cs)}/{len(cs)}",
                    }
                )
    memory = {
        "components_mib": round(total / 1024),
        "shims_mib": round(shims / 1024),
        "pods_mib": round(pods / 1024),
        "total_mib": round((total + shims + pods) / 1024),
    }
    if as_json:
        print(
            json.dumps(
                {"components": rows, "node_ready": ready, "pods": pods_list, "memory": memory}, indent=2
            )
        )
        return 0 if all(r["running"] for r in rows) and ready else 1
    print(f"{'component':<26}{'pid':>8}  {'state':<8}{'RSS MiB':>9}")
    for r in rows:
        state = "running" if r["running"] else "STOPPED"
        print(f"{r['component']:<26}{r['pid'] or '-':>8}  {state:<8}{r['rss_mib']:>9}")
    readiness = "Ready" if ready else "not ready" if ready is False else "unknown (apiserver down)"
    print(f"\nnode {s.node_name}: {readiness}")
    for p in pods_list:
        print(f"  {p['namespace']:<22}{p['name']:<48}{p['phase']:<10}{p['ready']}")
    print(
        f"\nmemory (RSS): components {memory['components_mib']} MiB + shims {memory['shims_mib']} MiB + "
        f"pods {memory['pods_mib']} MiB = {memory['total_mib']} MiB"
    )
    return 0 if all(r["running"] for r in rows) and ready else 1
