"""What `make up`, `down`, `clean`, `status`, `start-X` and `stop-X` do."""

from __future__ import annotations

import platform
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from knative_standins.pod_cpu import PodCgroups

from .component import Component, PrerequisiteError, Program, Say, running_as_root
from .components import all_components
from .secrets import load_secrets
from .settings import PORTS, ConfigError, Settings
from .supervisor import Supervisor, log_file, render_config


@dataclass
class ComponentStatus:
    component: str
    state: str  # supervisor's state of its processes: RUNNING, STOPPED, FATAL, ... or DOWN
    ready: bool
    detail: str  # why it is not ready, empty when it is
    address: str
    logs: list[str]
    resident_mib: float  # memory of its processes and their children
    # Functions only (None elsewhere): ready instances, what the autoscaler wants, idle at zero.
    instances_ready: int | None = None
    instances_desired: int | None = None
    scaled_to_zero: bool | None = None


def tree_mib(pid: int, file: str, field: str) -> float:
    """One kB field of /proc/<pid>/<file> (e.g. status VmRSS:, smaps_rollup Pss:) summed over a
    process and all its descendants, in MiB (Linux); a process that is gone counts nothing."""
    total_kib, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            text = Path(f"/proc/{current}/{file}").read_text()
            total_kib += int(next(line.split()[1] for line in text.splitlines() if line.startswith(field)))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, StopIteration, ValueError):
            continue
    return total_kib / 1024


def resident_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    return tree_mib(pid, "status", "VmRSS:")


def check_machine() -> None:
    """Stop early, in one sentence, when the machine lacks what the stack needs."""
    if platform.system() != "Linux" or not shutil.which("apt-get"):
        raise PrerequisiteError(
            "ripple's local stack needs a Debian-like Linux (apt-get, Debian 12 or Ubuntu 22.04+)."
        )
    if not shutil.which("java"):
        raise PrerequisiteError(
            "Java is missing: install a JDK 17 (apt-get install openjdk-17-jdk-headless) and rerun."
        )
    version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', version)
    if not match or int(match.group(1)) < 17:
        raise PrerequisiteError(
            f"Java 17 or newer is needed, found {version.splitlines()[0] if version else 'none'}: "
            "install openjdk-17-jdk-headless and put it first on PATH."
        )
    if not shutil.which("mvn"):
        raise PrerequisiteError("Maven is missing: install it (apt-get install maven) and rerun.")


def probe(component: Component, settings: Settings, secrets: Mapping[str, str]) -> str | None:
    """The component's readiness; a probe that breaks counts as "not ready", with the reason."""
    try:
        return component.probe(settings, secrets)
    except Exception as error:  # a probe must never take `make up` down with a traceback
        return f"probe failed: {type(error).__name__}: {error}"


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(settings: Settings, supervisor: Supervisor) -> None:
    """A port taken by something that is not ours stops `make up` with what to do."""
    if supervisor.is_running():
        return  # ports held by our own processes are expected; supervisord reports crashes
    for name, port in settings.ports.items():
        if port_in_use(settings.host, port):
            variable = PORTS[name][0]
            raise PrerequisiteError(
                f"Port {port} ({variable}) is already taken by another process: stop that process "
                f"or set {variable} to a free port, then rerun `make up`."
            )


class Stack:
    def __init__(self, settings: Settings, say: Say) -> None:
        self.settings = settings
        self.say = say
        self.components = all_components()
        self.supervisor = Supervisor(settings)

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        names = ", ".join(c.name for c in self.components)
        raise PrerequisiteError(f"There is no component {name!r}: choose one of {names}.")

    def _secrets(self) -> dict[str, str]:
        return load_secrets(self.settings)

    def up(self) -> None:
        check_machine()
        settings = self.settings
        for directory in (settings.dist_dir, settings.data_dir, settings.log_dir, settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        check_ports(settings, self.supervisor)
        secrets = self._secrets()
        for component in self.components:
            component.install(settings, self.say)
        for component in self.components:
            component.prepare(settings, secrets, self.say)
        groups = {c.name: c.programs(settings, secrets) for c in self.components}
        deferred = frozenset(c.name for c in self.components if c.start_tier > 0)
        cgroups = self._pod_cgroups(groups)
        fresh = self.supervisor.ensure_running(render_config(settings, groups, deferred, cgroups))
        if fresh:
            self.say("started supervisord; starting " + ", ".join(g for g in groups if g not in deferred))
        for tier in sorted({c.start_tier for c in self.components}):
            members = [c for c in self.components if c.start_tier == tier]
            states = self._process_states()
            for component in members:
                # Anything stopped by hand (`make stop-flink`) comes back with `make up` too.
                if states.get(component.name) != "RUNNING":
                    if not (fresh and tier == 0):
                        self.say(f"starting {component.name}")
                    self.supervisor.rpc.startProcessGroup(component.name, False)
            self.wait_ready(members, secrets)

    def _pod_cgroups(self, groups: dict[str, list[Program]]) -> dict[str, Path]:
        """Each program's pod cgroup, weighted by its manifest's CPU request (pod_cpu.py)."""
        pods = PodCgroups()
        if pods.unavailable:
            self.say(f"programs run without their manifests' CPU requests as weights: {pods.unavailable}")
            return {}
        cgroups: dict[str, Path] = {}
        for program in (p for programs in groups.values() for p in programs):
            owner = None
            if program.run_as_when_root and running_as_root():
                owner = pwd.getpwnam(program.run_as_when_root).pw_uid
            procs = pods.prepare(program.pod_name, program.cpu, owner)
            if procs is not None:
                cgroups[program.name] = procs
        return cgroups

    def _process_states(self) -> dict[str, str]:
        states: dict[str, list[str]] = {}
        for info in self.supervisor.processes().values():
            states.setdefault(info["group"], []).append(info["statename"])
        return {
            group: "RUNNING" if all(s == "RUNNING" for s in names) else "/".join(sorted(set(names)))
            for group, names in states.items()
        }

    def wait_ready(self, components: list[Component], secrets: Mapping[str, str]) -> None:
        """Wait until each component answers, then run its provisioning step once."""
        started = time.monotonic()
        pending = list(components)
        last_report = 0.0
        while pending:
            for component in list(pending):
                state = self._process_states().get(component.name, "DOWN")
                # Ready as `status` counts it: its probe answers AND supervisord has left STARTING
                # (its processes lived startsecs), so the table printed next says RUNNING too.
                reason = probe(component, self.settings, secrets) if state == "RUNNING" else state.lower()
                if reason is None:
                    component.after_ready(self.settings, secrets, self.say)
                    self.say(f"{component.name} is ready ({time.monotonic() - started:.0f}s)")
                    pending.remove(component)
                    continue
                if (
                    state in ("FATAL", "BACKOFF", "EXITED")
                    or time.monotonic() - started > self.settings.ready_timeout_s
                ):
                    raise PrerequisiteError(self._failure(component, state, reason))
            elapsed = time.monotonic() - started
            if pending and elapsed - last_report >= 10:
                last_report = elapsed
                waiting = ", ".join(c.name for c in pending)
                self.say(f"waiting for {waiting}… ({elapsed:.0f}s)")
            if pending:
                time.sleep(1)

    def _failure(self, component: Component, state: str, reason: str) -> str:
        lines = [f"{component.name} did not become ready ({state}: {reason})."]
        for program in component.programs(self.settings, self._secrets()):
            path = log_file(self.settings, program.name)
            tail = path.read_text(errors="replace").splitlines()[-20:] if path.exists() else []
            lines.append(f"Last lines of {path}:")
            lines.extend("  " + line for line in tail)
        return "\n".join(lines)

    def status(self) -> list[ComponentStatus]:
        secrets = self._secrets() if self.settings.secrets_file.exists() else {}
        states = self._process_states()
        processes = self.supervisor.processes()
        rows = []
        for component in self.components:
            state = states.get(component.name, "DOWN")
            programs = self._programs(component)
            reason = probe(component, self.settings, secrets) if state == "RUNNING" else state.lower()
            serving_status = getattr(component, "serving_status", None)
            serving = serving_status(self.settings) if serving_status and state == "RUNNING" else None
            rows.append(
                ComponentStatus(
                    component=component.name,
                    state=state,
                    ready=reason is None,
                    detail=reason or "",
                    address=component.address(self.settings),
                    logs=[str(log_file(self.settings, p.name)) for p in programs],
                    resident_mib=round(
                        sum(
                            resident_mib(processes[p.name]["pid"])
                            for p in programs
                            if processes.get(p.name, {}).get("pid")
                        ),
                        1,
                    ),
                    instances_ready=serving["instances_ready"] if serving else None,
                    instances_desired=serving["instances_desired"] if serving else None,
                    scaled_to_zero=serving["scaled_to_zero"] if serving else None,
                )
            )
        return rows

    def _programs(self, component: Component) -> list[Program]:
        try:
            return component.programs(self.settings, self._secrets())
        except (PrerequisiteError, ConfigError):
            return []

    def stop(self, name: str) -> None:
        self.component(name)
        if self.supervisor.is_running():
            self.supervisor.stop_group(name)
            self.say(f"{name} stopped")

    def start(self, name: str) -> None:
        component = self.component(name)
        if not self.supervisor.is_running():
            raise PrerequisiteError("The stack is not running: run `make up` first.")
        self.supervisor.start_group(name)
        self.wait_ready([component], self._secrets())

    def down(self) -> None:
        if self.supervisor.is_running():
            self.say("stopping every component (data is kept)…")
            self.supervisor.shutdown()
        PodCgroups().remove_all()
        self.say("stack is down")

    def clean(self) -> None:
        self.down()
        for directory in (self.settings.data_dir, self.settings.log_dir, self.settings.run_dir):
            shutil.rmtree(directory, ignore_errors=True)
        self.settings.secrets_file.unlink(missing_ok=True)
        self.say(f"wiped data, logs and secrets under {self.settings.home} (downloads in dist/ are kept)")


def status_rows_as_dicts(rows: list[ComponentStatus]) -> list[dict]:
    return [asdict(row) for row in rows]
