"""What a component of the local stack is: how it is installed, started and found ready."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knative_standins.pod_cpu import CpuQuantityError, PodCpu

from .settings import Settings

# The CPU of a program whose cluster manifest declares none (Prometheus, the mail sink, the local
# dashboard): a small server's request, so that it is neither starved (a BestEffort pod's weight of
# 2) nor weighed like the servers that declare one.
UNDECLARED_CPU = PodCpu(request_milli=100)

# Progress messages go through this, so the CLI decides where they are shown.
Say = Callable[[str], None]


class PrerequisiteError(Exception):
    """Something the machine lacks; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class Program:
    """One long-running process, supervised by supervisord."""

    name: str
    command: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # PostgreSQL refuses to run as root: when the stack runs as root it runs as this user.
    run_as_when_root: str | None = None
    stop_signal: str = "TERM"
    stop_wait_s: int = 30
    # Its pod's CPU request and limit (knative_standins.pod_cpu), from the manifest a cluster
    # applies; programs naming the same `pod` share one cgroup, as one pod's processes do.
    cpu: PodCpu = UNDECLARED_CPU
    pod: str = ""

    @property
    def pod_name(self) -> str:
        return self.pod or self.name


def python_program(
    name: str, module: str, *arguments: str, env: Mapping[str, str] | None = None, **options: Any
) -> Program:
    """`python -m module arguments` with the stack's own interpreter, its output unbuffered so that
    supervisord's log shows it as it happens; `options` are the other fields of Program."""
    return Program(
        name=name,
        command=[sys.executable, "-m", module, *arguments],
        env={"PYTHONUNBUFFERED": "1", **(env or {})},
        **options,
    )


def manifest_document(manifest: Path, kind: str) -> dict:
    """The first `kind` document of a cluster manifest of infra/."""
    import yaml

    for document in yaml.safe_load_all(manifest.read_text()):
        if isinstance(document, dict) and document.get("kind") == kind:
            return document
    raise PrerequisiteError(f"{manifest} has no {kind}: restore it from git.")


def declared_cpu(resources: Any, where: str) -> PodCpu:
    """A container's `resources` as its pod's CPU; a bad quantity stops `make up` saying where."""
    try:
        return PodCpu.from_resources(resources, where)
    except CpuQuantityError as error:
        raise PrerequisiteError(f"{error}; fix the manifest.") from None


def manifest_cpu(manifest: Path, kind: str, *keys: str) -> PodCpu:
    """The CPU `resources` at `keys` in the `kind` document of a cluster manifest of infra/."""
    value: Any = manifest_document(manifest, kind)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return declared_cpu(value, f"{manifest} {kind} {'.'.join(keys)}")


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    path: str = "/metrics"
    honor_labels: bool = False
    interval_s: int | None = None  # the job's scrape interval; None: the global one (5 s)


class Component:
    """Base of every component. Subclasses set `name` and override what they need."""

    name: str = ""
    description: str = ""
    # `make up` starts components tier by tier, each once the tiers before it are ready (and
    # provisioned: databases, topics): 0 servers, 1 what needs them (Flink's job, the
    # functions' migrations), 2 what needs the functions (the KafkaSource dispatchers).
    start_tier: int = 0

    def install(self, settings: Settings, say: Say) -> None:
        """Fetch whatever is missing. Idempotent: a second call does nothing."""

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        """Write configuration and do one-time initialisation before the programs start."""

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        raise NotImplementedError

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        """None when the component answers as it should; otherwise why it does not (yet)."""
        raise NotImplementedError

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        """Idempotent provisioning that needs the running server (topics, databases, ...)."""

    def address(self, settings: Settings) -> str:
        return ""

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        """Where Prometheus finds this component's metrics."""
        return []

    def run_dir(self, settings: Settings) -> Path:
        """Its folder for what `prepare` writes (configuration, sockets): RIPPLE_HOME/run/<name>."""
        return settings.run_dir / self.name

    def data_dir(self, settings: Settings) -> Path:
        """Its folder for state kept across restarts: RIPPLE_HOME/data/<name>."""
        return settings.data_dir / self.name


class PortComponent(Component):
    """A stand-in process on one port of its own (a dispatcher's metrics, an ingress): it is ready
    when `probe_path` answers 200 there, shown at `address_path`, scraped as `scrape_job`."""

    probe_path = "/metrics"
    address_path = "/metrics"
    scrape_job = ""
    what = "metrics port"  # names the port in the probe's complaint
    # One of several alike (a Broker's ingress, a Trigger's dispatcher): the n-th listens on the
    # port of Settings.ports[first_port] + n.
    first_port = ""
    index = 0

    def port(self, settings: Settings) -> int:
        return settings.ports[self.first_port] + self.index

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        status = http_status(f"http://{settings.host}:{self.port(settings)}{self.probe_path}")
        return None if status == 200 else f"{self.what} answered {status}"

    def address(self, settings: Settings) -> str:
        return f"http://{settings.host}:{self.port(settings)}{self.address_path}"

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [ScrapeTarget(self.scrape_job, f"{settings.host}:{self.port(settings)}")]


def running_as_root() -> bool:
    return os.geteuid() == 0


def let_reach(user: str, settings: Settings, *paths: Path) -> None:
    """Let a system account (postgres, rabbitmq, www-data) reach paths inside the state directory.

    Servers that refuse to run as root run as their Debian account, which must be able to enter
    every directory above its files. Inside RIPPLE_HOME ripple adds search permission (x, never
    read); above it ripple changes nothing and, where the account cannot pass, stops with the
    directory and what to do (a `mktemp -d` folder is 0700, for example) instead of the server's
    own "Permission denied" later.
    """
    if not running_as_root():
        return
    account = pwd.getpwnam(user)
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for path in paths:
        for parent in path.parents:
            if parent == settings.home or settings.home in parent.parents:
                parent.chmod(parent.stat().st_mode | 0o011)
                continue
            mode = parent.stat()
            passable = (
                mode.st_mode & stat.S_IXOTH
                or (mode.st_uid == account.pw_uid and mode.st_mode & stat.S_IXUSR)
                or (mode.st_gid in groups and mode.st_mode & stat.S_IXGRP)
            )
            if not passable:
                raise PrerequisiteError(
                    f"the `{user}` account cannot enter {parent} (mode {stat.filemode(mode.st_mode)}), "
                    f"so it cannot reach {path}: run `chmod o+x {parent}` or put the checkout "
                    "(or RIPPLE_HOME) under a directory others may enter, and rerun."
                )


def run(command: list[str], *, say: Say | None = None, **kwargs: object) -> None:
    """Run a setup command; on failure raise with the command's own last words."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PrerequisiteError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")
    if say and result.stdout.strip():
        say(result.stdout.strip().splitlines()[-1])


def maven_fetch(pom: Path, output_dir: Path, say: Say, what: str) -> None:
    """Resolve the artifacts a project pom declares into output_dir (once per pom content).

    The pom is the pin: its content is stamped next to the output, so editing a version in the
    pom re-resolves on the next `make up` and an unchanged pom costs nothing.
    """
    stamp = output_dir / ".pom-stamp"
    wanted = pom.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if shutil.which("mvn") is None:
        raise PrerequisiteError("Maven is missing: install it (apt-get install maven) and rerun.")
    say(f"downloading {what} from Maven Central (once)…")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    run(
        ["mvn", "-B", "-q", "-f", str(pom), "package", f"-Dripple.output={output_dir}"],
    )
    stamp.write_text(wanted)


def require_binary(binary: str, package: str) -> str:
    """The path of a program a Debian package puts on PATH, or a message saying how to get it."""
    path = shutil.which(binary)
    if path is None:
        raise _not_installed(binary, package)
    return path


def require_file(path: Path, package: str, what: str) -> None:
    """A file a Debian package installs outside PATH (a server, a module) is there, or a message
    naming `what` is missing and how to get it."""
    if not path.exists():
        raise _not_installed(what, package)


def _not_installed(what: str, package: str) -> PrerequisiteError:
    return PrerequisiteError(
        f"{what} is missing: run `sudo apt-get install {package}` (or `make prereqs`) and rerun."
    )


def http_status(url: str, timeout: float = 3.0) -> int | None:
    """The status an HTTP GET gets, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None
