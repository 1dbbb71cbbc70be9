"""What the wrk benchmarks share: one wrk run, and the CPU of the function behind a port.

- `run_wrk`: wrk with one of this folder's Lua scripts, which print their figures as one
  `RESULT {json}` line (requests, non_2xx, socket_errors, duration_us, p50_us, p99_us).
- `free_port`, `stored_rows`: a port for a private process, and how many of a run's events the
  event-store table holds so far (-1 while PostgreSQL cannot be reached: the stack is shared).
- `function_cpu_seconds`: user+system CPU of whoever serves a port and all its descendants,
  exited ones included (the local activator stops instances as it scales down, gunicorn replaces
  workers), less the local activator's own CPU, which is the queue-proxy's share, not the
  function's; that share is returned apart. Built on `with_descendants` (a process tree from
  /proc) and `cpu_ticks` (a process's own and exited children's ticks), which the scenarios' CPU
  section (scenarios/cpu.py) uses too.

- `count_until`: poll a count (rows stored, events done) until it reaches the run's total while the
  process under test stays alive, with the times at 10 % and 90 % for a steady rate.
- `flame_graph`: py-spy recording a process for the length of a with-block (the benches' --profile).
- `percentile`: the one percentile of every report here (linear between ranks, q in 0..100).
- `http_status`: the status a GET gets (the stack runner's probe), None when nothing answers.

Used by the benchmarks of loadtest/ (run as modules: `python -m loadtest.<folder>.<script>`).
"""

from __future__ import annotations

import cProfile
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from ripple_stack.component import http_status

__all__ = ["function_cpu_seconds", "http_status", "percentile", "run_wrk"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TICK_S = 1 / CLOCK_TICKS  # seconds of CPU per clock tick (/proc counts ticks)


def run_wrk(
    script: Path, url: str, *, threads: int, connections: int, duration_s: int, env: Mapping[str, str]
) -> dict:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk failed for {url}:\n{result.stdout}\n{result.stderr}")
    return json.loads(line.removeprefix("RESULT "))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[-1].split("/")[0])


def processes_on_port(port: int) -> list[int]:
    """Whoever listens on the port (gunicorn, or the local activator in front of the function's
    instances) and all their descendants."""
    output = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return with_descendants(int(p) for p in re.findall(r"pid=(\d+)", output))


def with_descendants(roots: Iterable[int]) -> list[int]:
    """The processes and all their descendants alive now (Linux /proc), sorted."""
    pids = set(roots)
    todo = list(pids)
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                children = map(int, task.read_text().split())
            except FileNotFoundError:
                continue
            for child in children:
                if child not in pids:
                    pids.add(child)
                    todo.append(child)
    return sorted(pids)


def cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(own, exited children's) clock ticks of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def own_ticks(pids: Iterable[int]) -> int:
    """Clock ticks the processes have used themselves so far (those gone count 0)."""
    return sum((cpu_ticks(pid) or (0, 0))[0] for pid in pids)


def _is_activator(pid: int) -> bool:
    try:
        return b"knative_standins.serving.activator" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def function_cpu_seconds(port: int) -> tuple[float, float] | None:
    """(the function's CPU seconds, the local activator's own) so far; None if nothing listens."""
    pids = processes_on_port(port)
    if not pids:
        return None
    function = activator = 0
    for pid in pids:
        ticks = cpu_ticks(pid)
        if ticks is None:
            continue
        own, children = ticks
        if _is_activator(pid):
            activator += own
            function += children  # its instances that already exited
        else:
            function += own + children
    return function / CLOCK_TICKS, activator / CLOCK_TICKS


@contextmanager
def flame_graph(pid: int, output: Path | None, *options: str) -> Iterator[None]:
    """py-spy records the process at 50 samples/s for the with-block, then writes the SVG to output
    (py-spy writes it on SIGINT). With no output, nothing is recorded."""
    if output is None:
        yield
        return
    spy = subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "50",
            "--output",
            str(output),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # py-spy must get the SIGINT, which a background shell job would ignore.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick), for a private server or a dead address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stored_rows(engine: Engine, source: str) -> int:
    """Rows of the run (its events' source) in events so far; -1 while PostgreSQL is unreachable."""
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM events WHERE source = :s"), {"s": source}
            ).scalar_one()
    except OperationalError:
        return -1


@dataclass
class Progress:
    """How a count reached its total: seconds in all, and (time, reading) at 10 % and at 90 %."""

    elapsed: float
    marks: dict[float, tuple[float, float]]

    def steady(self, total: int) -> float:
        """Per second between 10 % and 90 % of the total: the rate without start and tail."""
        (t1, _), (t9, _) = self.marks[0.1], self.marks[0.9]
        return 0.8 * total / ((t9 - t1) or 1e-9)


def count_until(
    count: Callable[[], int],
    total: int,
    process: subprocess.Popen,
    log: Path,
    what: str = "rows",
    timeout_s: float = 1800.0,
    interval_s: float = 0.2,
    reading: Callable[[], float] = lambda: 0.0,
) -> Progress:
    """Poll count() until it reaches total; `reading` (e.g. the process's CPU) is taken at 10 %
    and 90 %. SystemExit, naming the log, if the process exits or timeout_s passes first."""
    started = time.monotonic()
    marks: dict[float, tuple[float, float]] = {}
    done = 0
    while done < total:
        if process.poll() is not None:
            raise SystemExit(f"the dispatcher exited ({process.returncode}); see {log}")
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"gave up after {timeout_s / 60:.0f} min with {done}/{total} {what}; see {log}")
        time.sleep(interval_s)
        done = count()
        for fraction in (0.1, 0.9):
            if fraction not in marks and done >= fraction * total:
                marks[fraction] = (time.monotonic(), reading())
    return Progress(time.monotonic() - started, marks)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks; None when empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def asgi_post_scope(headers: list[tuple[bytes, bytes]], path: str = "/") -> dict:
    """The ASGI scope of an HTTP/1.1 POST as uvicorn hands it to an app: for the in-process CPU
    harnesses (loadtest/gateway/inprocess.py, loadtest/broker/*_cpu.py), which call a function's
    app without sockets."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }


def timed_call(run: Callable[[], object], profile: Path | None = None) -> tuple[float, float]:
    """(this process's CPU seconds, wall seconds) of one call of `run`; with `profile`, cProfile's
    stats of the call written there (the in-process harnesses, loadtest/broker/*_cpu.py)."""
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    run()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler:
        profiler.dump_stats(profile)
    return cpu, wall


def bench_event_attributes(event_type: str, source: str, **extensions: str) -> dict[str, str]:
    """The attributes of one in-process harness event (tenant acme, JSON data, a fixed time, a
    fresh id), with the extensions given (loadtest/broker/*_cpu.py)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "time": "2026-12-03T17:00:00.123Z",
        "tenant": "acme",
        **extensions,
    }


def binary_event_headers(host: str, attributes: Mapping[str, str], body: bytes) -> list[tuple[bytes, bytes]]:
    """A binary-mode CloudEvent request's headers (ASCII attribute values): `datacontenttype` as
    Content-Type, every other attribute as ce-<name>."""
    headers = [(b"host", host.encode()), (b"content-length", str(len(body)).encode())]
    headers += [
        (b"content-type" if name == "datacontenttype" else f"ce-{name}".encode(), value.encode())
        for name, value in attributes.items()
    ]
    return headers


async def asgi_post(app: Callable, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST `body` into an ASGI `app` in-process; the response's status."""
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(asgi_post_scope(headers), receive, send)
    return statuses[0]
