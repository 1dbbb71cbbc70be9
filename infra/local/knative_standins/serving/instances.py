"""One instance of a function: a process running the manifest's command on its own port.

What a Knative pod of the revision is locally: started with the container's command, args and
env plus `PORT`, probed on the manifest's readinessProbe path until it answers 200, and stopped
the way a pod is: no new requests first, then SIGTERM once its in-flight requests are done, then
SIGKILL after the grace period. Each instance runs in its own process group (so the TERM reaches
an `sh -c` wrapper's children) and dies with the activator if the activator is killed; given its
pod's cgroup (pod_cpu.py), it joins it before the command runs, so the manifest's CPU request and
limit weigh on it from its first instruction, imports included.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

import aiohttp

from ..pod_cpu import join

STARTING, READY, DRAINING, STOPPED, FAILED = "starting", "ready", "draining", "stopped", "failed"
# Probe fast while starting: every poll interval is added to the cold start.
READINESS_POLL_S = 0.02
STOP_GRACE_S = 30.0


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a SIGKILLed activator must not leave instances holding their ports.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _before_exec(cgroup_procs: Path | None):
    def run() -> None:
        _die_with_parent()
        if cgroup_procs is not None:
            join(cgroup_procs)  # a refusal leaves it where the activator is, as without cgroups

    return run


class Instance:
    def __init__(self, function: str, slot: int, host: str, port: int) -> None:
        self.name = f"{function}-{slot + 1}"
        self.slot = slot
        self.port = port
        self.url = f"http://{host}:{port}"
        self.state = STARTING
        self.active = 0  # requests in flight on it (the throttler's slots)
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.ready_after_s: float | None = None
        self.exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(
        self,
        command: list[str],
        cwd: str,
        env: dict[str, str],
        log_path: Path,
        cgroup_procs: Path | None = None,
    ) -> None:
        self.started_at, self.started_mono = time.time(), time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.write(f"--- {stamp} start {self.name}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env={**env, "PORT": str(self.port)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_before_exec(cgroup_procs),
            )

    async def wait_ready(self, session: aiohttp.ClientSession, path: str) -> bool:
        """Poll the readiness path until it answers 200 (True) or the process exits (False)."""
        assert self.process is not None
        url = self.url + path
        while self.process.returncode is None and self.state == STARTING:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    await response.read()
                    if response.status == 200:
                        self.ready_after_s = time.monotonic() - self.started_mono
                        return True
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(READINESS_POLL_S)
        return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM once nothing is in flight, SIGKILL after the grace period."""
        self.state = DRAINING
        # The activator stopped routing to it already; let what is in flight finish.
        while self.active > 0 and self.process is not None and self.process.returncode is None:
            await asyncio.sleep(0.05)
        self.signal(signal.SIGTERM)
        if self.process is None:
            return
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.process.wait()
