"""CPU cost of the activator on the hot path: the same load direct to an instance and through it.

Starts a private activator (min-scale 1) in front of the serving tests' tiny function, drives
`wrk` at the instance directly and then at the activator, and prints requests/s and the CPU time
per request of the activator process and of the instance (from /proc), with the load average:
the machine is shared, so read the ratios, not the absolute figures. Needs wrk; not the stack.
(The first, aiohttp-based data path was measured beside this one until stop 16 and left the
product then: its figures are in loadtest/serving/profiles/.)

    .venv/bin/python loadtest/serving/bench_activator.py [--seconds 10] [--connections 32] [--pause 5]

`--pause S` waits S seconds into each run through the activator before it prints the activator's
pid, for `py-spy record --pid` (loadtest/serving/profiles/).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra" / "local" / "knative_standins" / "serving" / "tests"))

from serving_helpers import activator  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(url: str, seconds: int, connections: int) -> float:
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    )
    total = re.search(r"(\d+) requests in", result.stdout)
    return float(total.group(1)) if total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pause", type=float, default=0.0)
    arguments = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        activator(Path(scratch), {"min-scale": "1", "max-scale": "1"}, containerConcurrency=0) as running,
    ):
        status = running.wait_for(lambda s: s["instances_ready"] == 1, "the instance")
        instance = status["instances"][0]
        direct_url = f"http://127.0.0.1:{instance['port']}/work"
        rows = []
        for label, url in (("direct", direct_url), ("activator", running.url + "/work")):
            if arguments.pause and label != "direct":
                note = f"activator pid {running.process.pid}"
                threading.Timer(arguments.pause, print, (note,), {"flush": True}).start()
            before = cpu_seconds(running.process.pid), cpu_seconds(instance["pid"])
            requests = wrk(url, arguments.seconds, arguments.connections)
            after = cpu_seconds(running.process.pid), cpu_seconds(instance["pid"])
            activator_us = (after[0] - before[0]) / max(requests, 1) * 1e6
            instance_us = (after[1] - before[1]) / max(requests, 1) * 1e6
            rows.append((label, requests / arguments.seconds, activator_us, instance_us))
        load = os.getloadavg()
        print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{'path':10} {'req/s':>8} {'activator CPU us/req':>21} {'instance CPU us/req':>20}")
        for label, rate, activator_us, instance_us in rows:
            print(f"{label:10} {rate:8.0f} {activator_us:21.0f} {instance_us:20.0f}")
        direct, through = rows
        print(f"activator CPU per request / instance CPU per request: {through[2] / max(through[3], 1):.2f}")
        print(f"throughput through the activator / direct: {through[1] / max(direct[1], 1):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
