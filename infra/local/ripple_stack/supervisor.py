"""The stack's processes under supervisord: config rendering and control over its socket."""

from __future__ import annotations

import configparser
import http.client
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from .component import Program, running_as_root
from .settings import Settings


def socket_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisor.sock"


def config_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.conf"


# Joins the pod's cgroup ($0, its cgroup.procs), then becomes the program: the PID supervisord
# signals is the program's own. A refusal is said in the program's log and changes nothing else.
JOIN_POD = 'echo $$ 2>/dev/null > "$0" || echo "not in the cgroup of $0" >&2; exec "$@"'


def render_config(
    settings: Settings,
    groups: dict[str, list[Program]],
    deferred: frozenset[str] = frozenset(),
    cgroups: Mapping[str, Path] | None = None,
) -> str:
    """supervisord.conf with one [group:x] per component and one [program:y] per process; a
    program with an entry in `cgroups` (program name -> its pod's cgroup.procs) starts in it."""
    config = configparser.RawConfigParser()
    config.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    config["unix_http_server"] = {"file": str(socket_path(settings)), "chmod": "0700"}
    config["supervisord"] = {
        "logfile": str(settings.log_dir / "supervisord.log"),
        "pidfile": str(settings.run_dir / "supervisord.pid"),
        "childlogdir": str(settings.log_dir),
        "nodaemon": "false",
        "user": "root" if running_as_root() else "",
    }
    if not running_as_root():
        del config["supervisord"]["user"]
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {"serverurl": f"unix://{socket_path(settings)}"}
    for group, programs in groups.items():
        config[f"group:{group}"] = {"programs": ",".join(p.name for p in programs)}
        for program in programs:
            command = program.command
            if cgroups and program.name in cgroups:
                command = ["sh", "-c", JOIN_POD, str(cgroups[program.name]), *command]
            section = {
                "command": shlex.join(command),
                "directory": str(program.cwd or settings.home),
                # Deferred groups wait for what they need (`make up` starts them tier by tier).
                "autostart": "false" if group in deferred else "true",
                # A crashed server comes back, as a pod would; `stop` keeps it down.
                "autorestart": "true",
                "startsecs": "3",
                "startretries": "5",
                "stopsignal": program.stop_signal,
                "stopwaitsecs": str(program.stop_wait_s),
                # Launcher scripts fork the JVM: signal the whole process group.
                "stopasgroup": "true",
                "killasgroup": "true",
                "redirect_stderr": "true",
                "stdout_logfile": str(log_file(settings, program.name)),
                "stdout_logfile_maxbytes": "50MB",
                "stdout_logfile_backups": "2",
            }
            if program.env:
                # supervisord's own %(...)s expansion would break on a literal percent sign.
                section["environment"] = ",".join(
                    f'{key}="{value.replace("%", "%%")}"' for key, value in program.env.items()
                )
            if program.run_as_when_root and running_as_root():
                section["user"] = program.run_as_when_root
            config[f"program:{program.name}"] = section
    lines = []
    for name in config.sections():
        lines.append(f"[{name}]")
        lines.extend(f"{key}={value}" for key, value in config[name].items())
        lines.append("")
    return "\n".join(lines)


def log_file(settings: Settings, program: str) -> Path:
    return settings.log_dir / f"{program}.log"


class Supervisor:
    """A connection to the stack's supervisord (started on demand by `ensure_running`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def rpc(self):
        # A fresh transport per use: one whose request failed cannot be reused.
        transport = SupervisorTransport(None, None, f"unix://{socket_path(self.settings)}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def is_running(self) -> bool:
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except (OSError, http.client.HTTPException, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
            return False

    def ensure_running(self, config: str) -> bool:
        """Write the config and start supervisord, or make a running one apply it.

        Returns True when supervisord was started by this call.
        """
        path = config_path(self.settings)
        changed = not path.exists() or path.read_text() != config
        path.write_text(config)
        path.chmod(0o600)  # holds the local secrets in program environments
        if self.is_running():
            if changed:
                # reread+update restarts only the programs whose section changed.
                self.supervisorctl("update")
            return False
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(path)], check=True)
        deadline = time.monotonic() + 15
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"supervisord did not start; see {self.settings.log_dir / 'supervisord.log'}"
                )
            time.sleep(0.2)
        return True

    def supervisorctl(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(config_path(self.settings)), *args],
            capture_output=True,
            text=True,
        )
        return result.stdout + result.stderr

    def processes(self) -> dict[str, dict]:
        if not self.is_running():
            return {}
        return {info["name"]: info for info in self.rpc.getAllProcessInfo()}

    def start_group(self, group: str) -> None:
        self.rpc.startProcessGroup(group, True)

    def stop_group(self, group: str) -> None:
        self.rpc.stopProcessGroup(group, True)

    def shutdown(self) -> None:
        if not self.is_running():
            return
        self.rpc.shutdown()
        pid_file = self.settings.run_dir / "supervisord.pid"
        deadline = time.monotonic() + 120
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.3)
