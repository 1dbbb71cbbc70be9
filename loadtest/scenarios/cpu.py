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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.measure import CLOCK_TICKS, cpu_ticks, with_descendants

Snapshot = dict[str, tuple[int, float]]  # program -> (pid, CPU seconds of its tree so far)


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
    rows: list[Usage], machine_s: float, wall_s: float, events: int, cores: int, driver_s: float | None = None
) -> str:
    """The report's markdown section (pure): programs above 1 % of the machine's busy time,
    the rest summed, the scenario's own process (load, probes) when measured, then what the
    machine spent outside all of them."""
    programs_s = sum(row.cpu_s for row in rows)
    per_event = (lambda s: f"{1000 * s / events:.2f}") if events else (lambda s: "-")
    lines = [
        "## Where the CPU went",
        "",
        f"CPU seconds of each program of the stack (its process tree, exited children included) from "
        f"the start of the load to the end of the drain ({wall_s:.0f} s on {cores} cores = "
        f"{wall_s * cores:.0f} CPU-s available), and per event accepted ({events}).",
        "",
        "| program | CPU s | ms per event | share of the machine's busy CPU |",
        "|---|---|---|---|",
    ]
    small = [row for row in rows if machine_s <= 0 or row.cpu_s < 0.01 * machine_s]
    for row in rows:
        if row in small:
            continue
        note = " (restarted: from its new start)" if row.restarted else ""
        share = f"{100 * row.cpu_s / machine_s:.1f} %" if machine_s > 0 else "-"
        lines.append(f"| {row.program}{note} | {row.cpu_s:.1f} | {per_event(row.cpu_s)} | {share} |")
    if small:
        rest = sum(row.cpu_s for row in small)
        lines.append(f"| {len(small)} other programs | {rest:.1f} | {per_event(rest)} | |")
    outside = max(0.0, machine_s - programs_s - (driver_s or 0.0))
    driver_row = (
        [f"| the scenario's own process (load, probes) | {driver_s:.1f} | {per_event(driver_s)} | |"]
        if driver_s is not None
        else []
    )
    busy = f"{100 * machine_s / (wall_s * cores):.0f} % of {cores} cores" if wall_s > 0 else ""
    lines += [
        f"| **the stack's programs** | **{programs_s:.1f}** | **{per_event(programs_s)}** | |",
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

    def _read(self) -> tuple[Snapshot, float, float, float] | None:
        try:
            return snapshot(self._pids()), machine_busy_seconds(), time.time(), own_cpu_seconds()
        except Exception:  # a report section, never a reason to fail the run
            return None

    def start(self) -> None:
        self._before = self._read()

    def stop(self, events: int) -> None:
        """Read the programs again; `events` accepted in between give the ms-per-event column."""
        after = self._read()
        if self._before is None or after is None:
            return
        before = self._before
        rows = usage(before[0], after[0])
        wall_s = after[2] - before[2]
        machine_s, driver_s = after[1] - before[1], after[3] - before[3]
        self._section = [cpu_section(rows, machine_s, wall_s, events, os.cpu_count() or 1, driver_s)]

    @property
    def section(self) -> list[str]:
        """The markdown section (empty when a reading failed or stop() was not called)."""
        return self._section
