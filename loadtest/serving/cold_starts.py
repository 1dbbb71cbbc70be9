"""Cold starts of every function of the running stack, through its activator, and their memory.

For each function (in parallel): wait until it is scaled to zero, send one GET to its readiness
path through its address (the activator holds it), and read the cold start that request caused
from $RIPPLE_HOME/logs/cold-starts.jsonl (exec -> ready, and the request's wait). Then the
resident memory of the activator and of the one instance it started. Repeats --rounds times and
prints the medians with the load average (the machine is shared: compare, do not quote alone).
Needs `make up`. A function kept warm by other traffic is reported as such.
An instance's memory is given twice: RSS summed over its processes (gunicorn's master and
workers, as `make status` counts it) counts the pages they share once per process; PSS (from
/proc/<pid>/smaps_rollup) splits each shared page between them, so it is what the instance
really adds. --one-at-a-time starts one function after the other instead of all together (six
simultaneous cold starts on two cores mostly measure each other).

    .venv/bin/python loadtest/serving/cold_starts.py [--rounds 3] [--functions gateway,query]
        [--one-at-a-time]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loadtest.measure import http_status
from ripple_stack.components.functions import knative_functions
from ripple_stack.settings import load_settings
from ripple_stack.stack import resident_mib, tree_mib
from ripple_stack.supervisor import Supervisor


def proportional_mib(pid: int) -> float:
    """PSS of a process and all its descendants (shared pages split between them), from /proc."""
    return tree_mib(pid, "smaps_rollup", "Pss:")


def one_round(function, settings, log: Path, wait_s: float) -> dict:
    deadline = time.monotonic() + wait_s
    while True:
        status = function.serving_status(settings)
        if status and status["scaled_to_zero"]:
            break
        if time.monotonic() > deadline:
            return {"function": function.name, "warm": True}
        time.sleep(0.5)
    offset = log.stat().st_size if log.exists() else 0
    probe = function.container().get("readinessProbe", {}).get("httpGet", {}).get("path", "/")
    sent = time.monotonic()
    # 0: nothing answered (the activator restarted under us: another engineer's `make up`).
    code = http_status(function.url(settings) + probe, timeout=400) or 0
    client_wait = time.monotonic() - sent
    time.sleep(0.5)  # the instance's RSS once it served its first request
    status = function.serving_status(settings) or {"instances": []}
    instance_rss = sum(resident_mib(i["pid"]) for i in status["instances"] if i["pid"])
    instance_pss = sum(proportional_mib(i["pid"]) for i in status["instances"] if i["pid"])
    with log.open() as handle:
        handle.seek(offset)
        records = [json.loads(line) for line in handle if line.strip()]
    mine = [r for r in records if r["function"] == function.name and r["reason"] == "request"]
    return {
        "function": function.name,
        "status": code,
        "client_wait_s": client_wait,
        "ready_s": mine[0]["ready_s"] if mine else None,
        "first_request_wait_s": mine[0]["first_request_wait_s"] if mine else None,
        "instance_rss_mib": instance_rss,
        "instance_pss_mib": instance_pss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--functions", default="", help="comma-separated names (default: all)")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for zero per round")
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="cold-start one function at a time, not all together"
    )
    arguments = parser.parse_args()
    settings = load_settings()
    log = settings.log_dir / "cold-starts.jsonl"
    wanted = {n for n in arguments.functions.split(",") if n}
    functions = [f for f in knative_functions() if not wanted or f.name in wanted]
    results: dict[str, list[dict]] = {f.name: [] for f in functions}
    with ThreadPoolExecutor(1 if arguments.one_at_a_time else len(functions)) as pool:
        for _ in range(arguments.rounds):
            for result in pool.map(lambda f: one_round(f, settings, log, arguments.wait), functions):
                results[result["function"]].append(result)
    processes = Supervisor(settings).processes()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'function':14} {'runs':>4} {'exec->ready s':>14} {'first request wait s':>21} "
        f"{'instance RSS MiB':>17} {'instance PSS MiB':>17} {'activator MiB':>14}"
    )
    for name, rounds in results.items():
        done = [r for r in rounds if not r.get("warm") and r.get("ready_s") is not None]
        pid = processes.get(name, {}).get("pid")
        activator_rss = 0.0
        if pid:
            fields = Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()
            activator_rss = int(fields[0]) / 1024

        def median(key: str, runs: list[dict] = done) -> str:
            values = [r[key] for r in runs if r.get(key) is not None]
            return f"{statistics.median(values):.2f}" if values else "-"

        print(
            f"{name:14} {len(done):>4} {median('ready_s'):>14} {median('first_request_wait_s'):>21} "
            f"{median('instance_rss_mib'):>17} {median('instance_pss_mib'):>17} {activator_rss:>14.1f}"
        )
        if len(done) < len(rounds):
            print(f"  ({len(rounds) - len(done)} round(s) found {name} warm or not answering)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
