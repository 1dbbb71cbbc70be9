"""A pod's CPU request and limit, applied to a local process the way kubelet applies them.

When the CPU is contended the kernel shares it between cgroups by weight. kubelet puts every pod
in a cgroup whose `cpu.shares` is its CPU request (millicores x 1024 / 1000, at least 2) and, when
the pod has a CPU limit, a CFS quota of the limit per 100 ms period; all pods sit under one parent
(kubepods) weighted as the node's allocatable CPU. Without that, every thread the stack runs weighs
the same: a JVM with forty threads outweighs a one-thread notifier, and a manifest's request means
nothing locally (issue 19's bursts: the alert path got a third of what it needed).

Here each pod is one cgroup `<parent>/<pod>` (cgroup v1 `cpu` controller, or v2 `cpu.weight` /
`cpu.max` where the cpu controller can be enabled), the parent (`ripple`) weighted as all of this
machine's cores. A process joins its pod's cgroup by writing its pid into `cgroup.procs`; children
it forks stay in it. Where none of this is possible (not root, no cpu controller) nothing is applied
and `PodCgroups.unavailable` says why; the stack runs as before. `RIPPLE_POD_CPU=off` turns it off.

The arithmetic follows kubelet (pkg/kubelet/cm/helpers_linux.go: MilliCPUToShares,
MilliCPUToQuota) and runc's shares -> cgroup v2 weight conversion.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
QUOTA_PERIOD_US = 100_000
MIN_QUOTA_US = 1000
PARENT = "ripple"
SWITCH = "RIPPLE_POD_CPU"


class CpuQuantityError(ValueError):
    pass


def millicores(quantity: str | int | float, where: str = "cpu") -> int:
    """A Kubernetes CPU quantity ("100m", "1", "0.5", 2) in millicores, rounded up as MilliValue."""
    text = str(quantity).strip()
    try:
        value = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        raise CpuQuantityError(
            f"{where}: {quantity!r} is not a CPU quantity; write millicores (250m) or cores (0.5, 1)"
        ) from None
    if value < 0:
        raise CpuQuantityError(f"{where}: {quantity!r} is negative; a CPU quantity is 0 or more")
    return int((value * 1000).to_integral_value(rounding=ROUND_CEILING))


def shares(request_milli: int) -> int:
    """kubelet's MilliCPUToShares: no request is the minimum weight (a BestEffort pod's)."""
    if request_milli <= 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, request_milli * SHARES_PER_CPU // 1000))


def quota_us(limit_milli: int, period_us: int = QUOTA_PERIOD_US) -> int:
    """kubelet's MilliCPUToQuota: the CPU time per period a limit allows."""
    return max(MIN_QUOTA_US, limit_milli * period_us // 1000)


def weight_v2(cpu_shares: int) -> int:
    """runc's cgroup v1 shares -> v2 cpu.weight (1..10000), so the proportions are the same."""
    return 1 + ((cpu_shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


@dataclass(frozen=True)
class PodCpu:
    """A pod's CPU: its request (millicores, 0 = none) and limit (None = no limit)."""

    request_milli: int = 0
    limit_milli: int | None = None

    @classmethod
    def from_resources(cls, resources: Mapping | None, where: str) -> PodCpu:
        """From a container's `resources` ({requests: {cpu}, limits: {cpu}}). As the API server
        defaults it, a limit without a request is also the request."""
        resources = resources or {}
        request = (resources.get("requests") or {}).get("cpu")
        limit = (resources.get("limits") or {}).get("cpu")
        limit_milli = millicores(limit, f"{where} limits.cpu") if limit is not None else None
        if request is None:
            return cls(limit_milli or 0, limit_milli)
        return cls(millicores(request, f"{where} requests.cpu"), limit_milli)

    @property
    def shares(self) -> int:
        return shares(self.request_milli)

    @property
    def quota_us(self) -> int | None:
        return quota_us(self.limit_milli) if self.limit_milli else None

    def describe(self) -> str:
        limit = f", limit {self.limit_milli}m" if self.limit_milli else ""
        return f"request {self.request_milli}m{limit}"


NO_CPU = PodCpu()  # a pod that declares no CPU: a BestEffort pod's weight


def _own_cgroup(proc_self_cgroup: str, controller: str | None) -> str:
    """This process's cgroup path in the hierarchy of `controller` (None: the v2 one)."""
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (
            controller is not None and controller in controllers.split(",")
        ):
            return path.lstrip("/")
    return ""


def _base(own: str, parent: str) -> str:
    """Where the parent goes: beside this process, or, for a process already in a pod (an
    activator starting instances), where that pod's parent is, never nested in the pod."""
    parts = own.split("/") if own else []
    return "/".join(parts[: parts.index(parent)]) if parent in parts else own


def _locate(mount: Path, parent: str, own: str | None = None) -> tuple[int, Path] | None:
    """(cgroup version, the parent's path) on this machine; None without a cpu controller.
    `own`: this process's /proc/self/cgroup (read when None)."""
    if own is None:
        own = _read(Path("/proc/self/cgroup"))
    if (mount / "cpu" / "cpu.shares").exists():
        return 1, mount / "cpu" / _base(_own_cgroup(own, "cpu"), parent) / parent
    if "cpu" in _read(mount / "cgroup.controllers").split():
        return 2, mount / _base(_own_cgroup(own, None), parent) / parent
    return None


class PodCgroups:
    """The pods' parent cgroup on this machine; `unavailable` is None when it can be used."""

    def __init__(
        self,
        mount: Path = Path("/sys/fs/cgroup"),
        parent: str = PARENT,
        env: Mapping[str, str] = os.environ,
        cores: int | None = None,
    ) -> None:
        self.version = 0
        self.parent = Path(mount / "none" / parent)  # where it would be: nothing exists there
        self.cores = cores or os.cpu_count() or 1
        self.unavailable: str | None = None
        located = _locate(mount, parent)
        if located is None:
            self.unavailable = f"no cgroup cpu controller under {mount}"
            return
        self.version, self.parent = located
        if env.get(SWITCH, "on").strip().lower() in ("off", "0", "false", "no"):
            self.unavailable = f"{SWITCH}=off"
            return
        try:
            self._make(self.parent, PodCpu(self.cores * 1000), is_parent=True)
        except OSError as error:
            self.unavailable = f"cannot create {self.parent} ({error.strerror}); run the stack as root"

    def _make(self, path: Path, cpu: PodCpu, is_parent: bool = False) -> None:
        if self.version == 2:
            # The parent's children can only be weighted once the cpu controller is on for them.
            _write(path.parent / "cgroup.subtree_control", "+cpu")
        path.mkdir(exist_ok=True)
        if self.version == 1:
            _write(path / "cpu.shares", str(cpu.shares))
            _write(path / "cpu.cfs_quota_us", str(cpu.quota_us or -1))
        else:
            if is_parent:
                _write(path / "cgroup.subtree_control", "+cpu")
            _write(path / "cpu.weight", str(weight_v2(cpu.shares)))
            _write(path / "cpu.max", f"{cpu.quota_us or 'max'} {QUOTA_PERIOD_US}")

    def prepare(self, pod: str, cpu: PodCpu, owner_uid: int | None = None) -> Path | None:
        """Create (or update) the pod's cgroup; returns the `cgroup.procs` a process joins by."""
        if self.unavailable:
            return None
        path = self.parent / pod
        try:
            self._make(path, cpu)
            if owner_uid is not None:
                # A program that runs as another user (PostgreSQL) joins by itself.
                os.chown(path / "cgroup.procs", owner_uid, -1)
        except OSError:
            return None
        return path / "cgroup.procs"

    def remove(self, pod: str) -> None:
        """Remove the pod's cgroup once its processes have gone (kept while any remain)."""
        if not self.unavailable:
            with contextlib.suppress(OSError):
                (self.parent / pod).rmdir()

    def remove_stale(self, prefix: str = "") -> None:
        """Remove the empty pod cgroups whose names start with `prefix` (all of them by default);
        also when switched off, so a stack that ran with it on leaves nothing behind."""
        if not self.parent.is_dir():
            return
        for child in self.parent.iterdir():
            if child.is_dir() and child.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    child.rmdir()

    def remove_all(self) -> None:
        """Remove every empty pod cgroup and then the parent (`make down`)."""
        self.remove_stale()
        with contextlib.suppress(OSError):
            self.parent.rmdir()


def applied(mount: Path = Path("/sys/fs/cgroup"), parent: str = PARENT, own: str | None = None) -> str:
    """One line for a report: whether the running stack's programs sit in pod cgroups. Looked
    for where PodCgroups puts them from this process's cgroup (_locate), then at the hierarchy's
    top (a stack started from another cgroup than the report's)."""
    located = _locate(mount, parent, own)
    candidates = ([located[1]] if located else []) + [mount / "cpu" / parent, mount / parent]
    for root in dict.fromkeys(candidates):
        # Only pods with processes count: cgroups outlive a stack that ran with the switch off.
        pods = [p for p in root.iterdir() if _read(p / "cgroup.procs").strip()] if root.is_dir() else []
        if pods:
            return f"the pods' CPU requests applied as cgroup weights ({len(pods)} pods under {root})"
    return "the pods' CPU requests not applied (no pod cgroups: RIPPLE_POD_CPU=off, or not root)"


def join(procs: Path, pid: int | None = None) -> bool:
    """Move `pid` (this process by default) into the cgroup whose `cgroup.procs` this is."""
    try:
        _write(procs, str(pid or os.getpid()))
    except OSError:
        return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    # cgroup files take one write each; an unbuffered write reports the kernel's refusal itself.
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.write(descriptor, value.encode())
    finally:
        os.close(descriptor)
