"""The node: a network namespace holding every cluster process, and the processes themselves.

Network rule: the whole cluster (etcd, the control plane, containerd and its pods, kubelet,
kube-proxy's iptables rules, the registry and the KIngress) lives inside one network namespace
that ``cluster-up`` creates. It has a loopback; the node IP on ``ripple0``, one end of a veth pair
whose other end is in the namespace too (the kernel here has no dummy driver), with a route for
the Service range onto it (so kube-proxy's OUTPUT rules can rewrite ClusterIP traffic from the node
itself); the pods' bridge made by the CNI plugin; and no route out: no default route, no veth to
the host. The host reaches it only through loopback ports relayed into it over Unix sockets (two
``socat`` halves per port, see ``Relay``).

Processes are entered into the namespace with ``nsenter --net`` (not ``ip netns exec``, which also
unshares the mount namespace: kubelet and containerd must see each other's mounts) and supervised
simply: started detached with a pid file each under ``run/``, stopped by those pids. No supervisord:
the set is fixed, started in order once, and ``cluster-status`` reports anything that died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings


def sh(*cmd: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, text=True, capture_output=capture)


def in_ns(s: Settings, *cmd: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{s.netns}", "--", *cmd]


# ---------------------------------------------------------------------------------------------
# the namespace


def netns_exists(s: Settings) -> bool:
    return Path(f"/run/netns/{s.netns}").exists()


def netns_up(s: Settings) -> None:
    """Create the namespace and its interfaces (idempotent)."""
    if not netns_exists(s):
        sh("ip", "netns", "add", s.netns)
    ns = ["ip", "-n", s.netns]
    sh(*ns, "link", "set", "lo", "up")
    if sh(*ns, "link", "show", "ripple0", check=False, capture=True).returncode != 0:
        # A veth pair with both ends inside the namespace: an interface with carrier for the node IP
        # (the kernel here has no dummy driver) that leads nowhere.
        sh(*ns, "link", "add", "ripple0", "type", "veth", "peer", "name", "ripple0-end")
        sh(*ns, "link", "set", "ripple0-end", "up")
    addrs = sh(*ns, "-o", "addr", "show", "dev", "ripple0", capture=True).stdout
    if f" {s.node_ip}/" not in addrs:
        sh(*ns, "addr", "add", f"{s.node_ip}/24", "dev", "ripple0")
    sh(*ns, "link", "set", "ripple0", "up")
    routes = sh(*ns, "route", "show", capture=True).stdout
    if not any(line.startswith(s.service_cidr) for line in routes.splitlines()):
        sh(*ns, "route", "add", s.service_cidr, "dev", "ripple0")
    if any(line.startswith("default") for line in routes.splitlines()):
        raise SystemExit(
            f"ripple-cluster: namespace {s.netns} has a default route; the network rule forbids it. "
            f"Run `make cluster-down` and look for whatever added it."
        )
    # Forwarding between the pods' bridge and the node, inside the namespace only (per-namespace sysctls).
    for key, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
        subprocess.run(
            in_ns(s, "sh", "-c", f"[ -e /proc/sys/{key} ] && echo {value} > /proc/sys/{key} || true"),
            check=True,
        )


def netns_down(s: Settings) -> None:
    if netns_exists(s):
        sh("ip", "netns", "del", s.netns, check=False)


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    """One supervised process: its command (run inside the namespace unless ``host``)."""

    name: str
    cmd: list[str]
    host: bool = False
    env: dict[str, str] | None = None


def pid_file(s: Settings, name: str) -> Path:
    return s.run / f"{name}.pid"


def pid_of(s: Settings, name: str) -> int | None:
    f = pid_file(s, name)
    try:
        pid = int(f.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    # A pid can be reused: check it is still a process started from our command line.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if str(s.home).encode() in cmdline or b"socat" in cmdline or b"nsenter" in cmdline else None


def start(s: Settings, p: Proc) -> int:
    """Start ``p`` detached unless it already runs; return its pid."""
    running = pid_of(s, p.name)
    if running:
        return running
    s.run.mkdir(parents=True, exist_ok=True)
    s.logs.mkdir(parents=True, exist_ok=True)
    cmd = p.cmd if p.host else in_ns(s, *p.cmd)
    env = dict(os.environ)
    env["PATH"] = f"{s.bin}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env.update(p.env or {})
    with (s.logs / f"{p.name}.log").open("ab") as log:
        log.write(f"\n=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file(s, p.name).write_text(str(proc.pid))
    return proc.pid


def wait_ready(
    what: str, probe: Callable[[], bool], timeout: float, log: Path | None = None, every: float = 1
) -> None:
    """Poll `probe` every `every` s until it holds; after `timeout` s stop with what is not ready
    and the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(every)
    hint = f"; see {log}" if log else ""
    raise SystemExit(f"ripple-cluster: {what} not ready after {timeout:.0f} s{hint}")


def _alive(pid: int) -> bool:
    """Running, not a zombie: stopped processes are reparented to PID 1, which may reap them late."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_many(s: Settings, names: list[str], timeout: float = 20) -> None:
    """SIGTERM every named process group at once, wait for them, SIGKILL what is left."""
    pids = {name: pid for name in names if (pid := pid_of(s, name))}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for name in names:
        pid_file(s, name).unlink(missing_ok=True)


def stop(s: Settings, name: str, timeout: float = 20) -> None:
    stop_many(s, [name], timeout)


@dataclass
class Relay:
    """A loopback port on the host relayed to ``target`` (host:port) inside the namespace.

    The host half listens on 127.0.0.1:port and connects to a Unix socket; the namespace half
    listens on that socket and connects to the target. No packet crosses a network interface
    between host and namespace, so nothing can route out of the namespace through it.
    """

    name: str
    port: int
    target: str

    def procs(self, s: Settings) -> list[Proc]:
        sock = s.run / f"relay-{self.name}.sock"
        return [
            Proc(
                f"relay-{self.name}-ns",
                ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600", f"TCP:{self.target}"],
            ),
            Proc(
                f"relay-{self.name}-host",
                ["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{sock}"],
                host=True,
            ),
        ]


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (by /proc parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def shim_pids(s: Settings) -> list[int]:
    """containerd shims started by our containerd (they daemonize, so are no descendants of it)."""
    sock = str(s.run / "containerd.sock").encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmd and sock in cmd:
                out.append(int(entry.name))
    return out


def kubepods_pids() -> list[int]:
    """Processes of the cluster's pods: everything in the kubepods cgroup kubelet made (cgroup v1)."""
    root = Path("/sys/fs/cgroup/pids/kubepods")
    pids: set[int] = set()
    if root.exists():
        for procs in root.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except OSError:
                continue
    return sorted(pids)


def unmount_under(path: Path) -> None:
    """Lazily unmount every mount below ``path``, deepest first (kubelet volumes, container rootfs)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(str(path) + "/"):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
