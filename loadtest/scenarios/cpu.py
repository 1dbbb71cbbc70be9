"""Where a run's CPU went: each program of the stack, its CPU seconds and ms per accepted event.

On two cores the notifications path of issue 19 is bounded by CPU, not by any one hop's
settings, so a scenario report says where the CPU went. Before the load starts and after the
drain, every supervised program's process tree is read from /proc (user + system ticks of the
tree, exited children included: instances the activator stopped count for their function, a
PostgreSQL backend for PostgreSQL) and the whole machine's busy time from /proc/stat. The table
gives each program's share, then the scenario's own process (its load driver threads and probes,
which share the machine with the stack), and the machine's line shows how much CPU went to anything
else (the kernel's own threads, another job on a shared machine).

A program restarted during the run (a fault killed it) counts from its new start only: the
killed process's CPU went to supervisord. Its row says so.

Beside its CPU, each program's wait for a CPU: the time its threads were runnable but not running
(the kernel's run-queue delay, /proc/<pid>/task/<tid>/schedstat), read every WAIT_SAMPLE_S while
the run lasts because a thread that exits takes its own figures with it. On a full machine every
program waits; one that waits many times as long as it runs is short of CPU weight (its pod's
request): the issue-19 burst found the Broker ingress waiting 80 s for every second it ran.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.measure import CLOCK_TICKS, cpu_ticks, with_descendants

Snapshot = dict[str, tuple[int, float]]  # program -> (pid, CPU seconds of its tree so far)
Schedstats = dict[int, tuple[int, int]]  # thread id -> (ns on a CPU, ns runnable and waiting)
WAIT_SAMPLE_S = 5.0  # ~25 ms of CPU per reading of the whole stack


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its descendants, exited ones included."""
    found = [ticks for ticks in map(cpu_ticks, with_descendants([pid])) if ticks is not None]
    return sum(own + children for own, children in found) / CLOCK_TICKS if found else None


def machine_busy_seconds() -> float:
    """CPU seconds every core spent on anything but idle and iowait since boot (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's CPU seconds, every thread (the load driver's workers, the probes) and any
    child it started (a load generator run as a program)."""
    own = tree_cpu_seconds(os.getpid())
    return time.process_time() if own is None else own


def thread_schedstats(pids: Iterable[int]) -> Schedstats:
    """Every thread's CPU and run-queue nanoseconds so far, for the processes given."""
    found: Schedstats = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                on_cpu, waiting = task.read_text().split()[:2]
            except (OSError, ValueError):
                continue
            found[int(task.parent.name)] = (int(on_cpu), int(waiting))
    return found


def waited_ns(last: Schedstats | None, now: Schedstats) -> int:
    """Run-queue nanoseconds between two readings of one program's threads (pure): a thread new
    since `last` counts from its start; with no `last` (the first reading) nothing counts yet."""
    if last is None:
        return 0
    total = 0
    for tid, (_, waiting) in now.items():
        earlier = last.get(tid)
        total += waiting if earlier is None else max(0, waiting - earlier[1])
    return total


class WaitSampler:
    """Each program's run-queue wait, summed over its process tree's threads, sampled in a thread."""

    def __init__(self, pids: Callable[[], Mapping[str, int]], interval_s: float = WAIT_SAMPLE_S) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._last: dict[str, Schedstats] = {}
        self.waited_s: dict[str, float] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-wait-sampler", daemon=True)

    def sample(self) -> None:
        for name, pid in self._pids().items():
            if not pid:
                continue
            now = thread_schedstats(with_descendants([pid]))
            waited = waited_ns(self._last.get(name), now)
            self.waited_s[name] = self.waited_s.get(name, 0.0) + waited / 1e9
            self._last[name] = now

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.sample()
            except Exception:  # a reading failed (supervisord busy): the next one catches up
                continue

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stopped.set()
        self._thread.join()
        self.sample()
        return self.waited_s


def snapshot(pids: Mapping[str, int]) -> Snapshot:
    """The CPU so far of each program (supervisord's name -> pid; a pid of 0 is not running)."""
    taken: Snapshot = {}
    for name, pid in pids.items():
        seconds = tree_cpu_seconds(pid) if pid else None
        if seconds is not None:
            taken[name] = (pid, seconds)
    return taken


@dataclass(frozen=True)
class Usage:
    program: str
    cpu_s: float
    restarted: bool  # counted from its new start only


def usage(before: Snapshot, after: Snapshot) -> list[Usage]:
    """Each program's CPU between the snapshots, most first (pure)."""
    rows = []
    for name, (pid, seconds) in after.items():
        earlier = before.get(name)
        restarted = earlier is None or earlier[0] != pid
        rows.append(Usage(name, seconds if restarted else max(0.0, seconds - earlier[1]), restarted))
    return sorted(rows, key=lambda row: (-row.cpu_s, row.program))


def cpu_section(
    rows: list[Usage],
    machine_s: float,
    wall_s: float,
    events: int,
    cores: int,
    driver_s: float | None = None,
    waits: Mapping[str, float] | None = None,
) -> str:
    """The report's markdown section (pure): programs above 1 % of the machine's busy time,
    the rest summed, the scenario's own process (load, probes) when measured, then what the
    machine spent outside all of them. With `waits` (program -> run-queue seconds), a column
    gives each program's wait for a CPU and that wait per second it ran."""
    programs_s = sum(row.cpu_s for row in rows)
    per_event = (lambda s: f"{1000 * s / events:.2f}") if events else (lambda s: "-")

    def waited(programs: list[Usage]) -> str:
        if waits is None:
            return ""
        seconds = sum(waits.get(row.program, 0.0) for row in programs)
        ran = sum(row.cpu_s for row in programs)
        ratio = f" ({seconds / ran:.1f})" if ran > 0 else ""
        return f" {seconds:.1f}{ratio} |"

    wait_header = " waited for a CPU, s (per CPU s) |" if waits is not None else ""
    wait_text = (
        " The wait for a CPU is the time the program's threads were runnable but not running (the"
        " kernel's run-queue delay), summed over its threads; in brackets, per second it ran."
        if waits is not None
        else ""
    )
    lines = [
        "## Where the CPU went",
        "",
        f"CPU seconds of each program of the stack (its process tree, exited children included) from "
        f"the start of the load to the end of the drain ({wall_s:.0f} s on {cores} cores = "
        f"{wall_s * cores:.0f} CPU-s available), and per event accepted ({events}).{wait_text}",
        "",
        f"| program | CPU s | ms per event | share of the machine's busy CPU |{wait_header}",
        "|---|---|---|---|" + ("---|" if waits is not None else ""),
    ]
    small = [row for row in rows if machine_s <= 0 or row.cpu_s < 0.01 * machine_s]
    for row in rows:
        if row in small:
            continue
        note = " (restarted: from its new start)" if row.restarted else ""
        share = f"{100 * row.cpu_s / machine_s:.1f} %" if machine_s > 0 else "-"
        lines.append(
            f"| {row.program}{note} | {row.cpu_s:.1f} | {per_event(row.cpu_s)} | {share} |{waited([row])}"
        )
    if small:
        rest = sum(row.cpu_s for row in small)
        lines.append(f"| {len(small)} other programs | {rest:.1f} | {per_event(rest)} | |{waited(small)}")
    outside = max(0.0, machine_s - programs_s - (driver_s or 0.0))
    driver_row = (
        [f"| the scenario's own process (load, probes) | {driver_s:.1f} | {per_event(driver_s)} | |"]
        if driver_s is not None
        else []
    )
    busy = f"{100 * machine_s / (wall_s * cores):.0f} % of {cores} cores" if wall_s > 0 else ""
    lines += [
        f"| **the stack's programs** | **{programs_s:.1f}** | **{per_event(programs_s)}** | |{waited(rows)}",
        *driver_row,
        f"| anything else on the machine (kernel, other jobs) | {outside:.1f} | | |",
        f"| the machine, busy | {machine_s:.1f} | | {busy} |",
    ]
    return "\n".join(lines) + "\n"


def program_pids(stack: object) -> dict[str, int]:
    """supervisord's program name -> pid (0: not running) for the local stack's settings."""
    from ripple_stack.supervisor import Supervisor

    return {info["name"]: info["pid"] for info in Supervisor(stack).processes().values()}


class Meter:
    """The stack's programs' CPU from `start()` to `stop()`, for a run's report.

    Readings that fail (no supervisord: a cluster run) leave the section out rather than the run.
    """

    def __init__(self, pids: Callable[[], Mapping[str, int]]) -> None:
        self._pids = pids
        self._before: tuple[Snapshot, float, float, float] | None = None
        self._section: list[str] = []
        self._waits: WaitSampler | None = None

    def _read(self) -> tuple[Snapshot, float, float, float] | None:
        try:
            return snapshot(self._pids()), machine_busy_seconds(), time.time(), own_cpu_seconds()
        except Exception:  # a report section, never a reason to fail the run
            return None

    def start(self) -> None:
        self._before = self._read()
        if self._before is not None:
            self._waits = WaitSampler(self._pids)
            try:
                self._waits.start()
            except Exception:  # a report column, never a reason to fail the run
                self._waits = None

    def stop(self, events: int) -> None:
        """Read the programs again; `events` accepted in between give the ms-per-event column."""
        waits = None
        if self._waits is not None:
            try:
                waits = self._waits.stop()
            except Exception:  # a report column, never a reason to fail the run
                waits = None
        after = self._read()
        if self._before is None or after is None:
            return
        before = self._before
        rows = usage(before[0], after[0])
        wall_s = after[2] - before[2]
        machine_s, driver_s = after[1] - before[1], after[3] - before[3]
        self._section = [cpu_section(rows, machine_s, wall_s, events, os.cpu_count() or 1, driver_s, waits)]

    @property
    def section(self) -> list[str]:
        """The markdown section (empty when a reading failed or stop() was not called)."""
        return self._section
