"""wrk against private gateways (directly and through a private nginx), single events and batches.

`make bench-gateway`. Never touches the stack's topics (issue 22, loadtest/isolation.py): each
gateway measured is a private one, the same function started the way the stack starts it, on a
free port and with its own topic prefix (`bench.<run>.<name>.`, topics created first and deleted
afterwards); the run ends by checking that the stack's topics did not grow.

Targets (`--targets`, comma separated):

- `gateway`: the private gateway of this repository, directly;
- `nginx`: a private nginx rendered from nginx/ with the stack's limit profile
  (RIPPLE_NGINX_PROFILE, default strict) in front of that gateway. One wrk client is one token, so
  this measures the per-client limit (strict: 20 requests/s), as the shared edge would;
- `nginx-open`: the same nginx with every limit lifted: what the edge's proxying costs;
- `noop`: a do-nothing function (202, no body read) on the same server stack: the ceiling;
- `--build NAME=REPO`: the gateway of another checkout (e.g. the commit before a change), measured
  in turn with the others (`--rounds 2`: A/B/A/B), started as that checkout's manifest says. Its
  gateway must know KAFKA_TOPIC_PREFIX.

A gateway instance is one process; each gateway measured runs as many instances on its port as
Knative's KPA keeps for `--connections` requests in flight (knative/gateway/service.yaml's target:
2 for 32; `--instances N` to choose), the kernel spreading connections over them (SO_REUSEPORT,
loadtest/isolation.py). A build served by gunicorn (its workers inside one instance) runs 1.

`--profile DIR`: afterwards, one more run of single events per gateway with py-spy attached
(`--subprocesses --gil`): `DIR/<name>-single.svg` and `DIR/<name>-single.txt` (collapsed stacks).

Fetches a token for ripple-publisher from the local Keycloak (client credentials, secret from
.ripple/secrets.env) and runs loadtest/gateway/events.lua for each combination; prints a table.
Usage: .venv/bin/python -m loadtest.gateway.run [--duration 15] [--threads 2] [--connections 32]
           [--targets gateway,nginx] [--batches 1,100] [--build before=/path/to/checkout] [--rounds 2]
           [--instances N] [--profile loadtest/gateway/profiles]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from keycloak import KeycloakOpenID

from loadtest import isolation, measure
from ripple_stack.components import nginx as edge
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import REPO_ROOT, load_settings

SCRIPT = Path(__file__).resolve().parent / "events.lua"
NOOP = Path(__file__).resolve().parent / "noop"
# nginx-open: the stack's profile with every limit far above what one machine can send.
OPEN_LIMITS = {
    "RATE_PER_ADDRESS": "1000000r/s",
    "BURST_PER_ADDRESS": "100000",
    "RATE_PER_CLIENT": "1000000r/s",
    "BURST_PER_CLIENT": "100000",
    "CONN_PER_ADDRESS": "10000",
}
PY_SPY_RATE = 100


def token(settings, secrets) -> str:
    openid = KeycloakOpenID(
        server_url=settings.keycloak_url,
        realm_name=settings.keycloak_realm,
        client_id="ripple-publisher",
        client_secret_key=secrets["RIPPLE_PUBLISHER_CLIENT_SECRET"],
    )
    return openid.token(grant_type="client_credentials")["access_token"]


def run_wrk(url: str, batch: int, args: argparse.Namespace, access_token: str) -> dict:
    env = {"TOKEN": access_token, "BATCH": str(batch), "RUN_ID": f"wrk{time.time_ns()}"}
    return measure.run_wrk(
        SCRIPT, url, threads=args.threads, connections=args.connections, duration_s=args.duration, env=env
    )


@contextlib.contextmanager
def noop_function(instances: int) -> Iterator[str]:
    """The do-nothing function served as the gateway's manifest serves it (ripple_server),
    `instances` processes on one port."""
    port = measure.free_port()
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ripple_server", "--target=handle", "--source=main.py"]
    processes: list[subprocess.Popen] = []
    url = f"http://127.0.0.1:{port}"
    try:
        for index in range(instances):
            group = {"process_group": 0 if index == 0 else processes[0].pid}
            processes.append(
                subprocess.Popen(
                    command, cwd=NOOP, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **group
                )
            )
            deadline = time.monotonic() + 30
            while measure.http_status(url + "/") is None or len(measure.processes_on_port(port)) <= index:
                if processes[-1].poll() is not None or time.monotonic() > deadline:
                    raise isolation.IsolationError("loadtest/gateway/noop did not start")
                time.sleep(0.2)
        yield url
    finally:
        if processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(processes[0].pid, 15)
            for process in processes:
                process.wait(timeout=20)


def profile(
    name: str, url: str, pid: int, args: argparse.Namespace, access_token: str, directory: Path
) -> None:
    """One wrk run of single events with py-spy attached: an SVG and the collapsed stacks."""
    directory.mkdir(parents=True, exist_ok=True)
    py_spy = str(Path(sys.executable).parent / "py-spy")
    seconds = max(5, args.duration - 3)
    common = ["record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking"]
    common += ["--rate", str(PY_SPY_RATE), "--duration", str(seconds)]
    recorders = [
        subprocess.Popen(
            [py_spy, *common, "--format", fmt, "--output", str(directory / f"{name}-single.{suffix}")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt"))
    ]
    run_wrk(url, 1, args, access_token)
    for recorder in recorders:
        recorder.wait(timeout=60)
    print(f"profile of {name}: {directory / f'{name}-single.svg'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--targets", default="gateway,nginx", help="comma separated: gateway, nginx, nginx-open, noop"
    )
    parser.add_argument("--batches", default="1,100", help="events per request, comma separated")
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="NAME=REPO",
        help="the gateway of another checkout, as a private gateway measured in turn; repeatable",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the targets in turn (A/B/A/B...)")
    parser.add_argument(
        "--instances",
        type=int,
        help="instances (processes on one port) of every gateway served by ripple_server "
        "(default: what the KPA keeps for --connections in flight)",
    )
    parser.add_argument("--profile", type=Path, help="folder for py-spy flame graphs of single events")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is not installed: run `make up` (it installs the Debian package) or apt-get install wrk."
        )
    settings = load_settings()
    secrets = load_secrets(settings)
    access_token = token(settings, secrets)
    builds = {"gateway": REPO_ROOT, **{k: Path(v) for k, v in (item.split("=", 1) for item in args.build)}}
    targets = [t for t in args.targets.split(",") if t]
    stack_topics = isolation.StackTopics(settings.kafka_bootstrap)
    with contextlib.ExitStack() as stack:
        gateways = stack.enter_context(
            isolation.private_gateways(
                settings, secrets, builds, concurrency=args.connections, instances=args.instances
            )
        )
        urls = {name: gateway.url for name, gateway in gateways.items()}
        upstream = f"127.0.0.1:{gateways['gateway'].port}"
        profile_name, profile_values = edge.selected_profile()
        for name, limits in (("nginx", {}), ("nginx-open", OPEN_LIMITS)):
            if name in targets:
                port = measure.free_port()
                stack.enter_context(
                    edge.private_edge(
                        profile_name,
                        gateway=upstream,
                        listen=f"127.0.0.1:{port}",
                        status_listen=f"127.0.0.1:{measure.free_port()}",
                        overrides={**profile_values, **limits},
                    )
                )
                urls[name] = f"http://127.0.0.1:{port}"
        if "noop" in targets:
            urls["noop"] = stack.enter_context(
                noop_function(args.instances or isolation.gateway_instances(args.connections))
            )
        measured = [t for t in targets if t != "gateway"] + list(gateways)
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, binary mode (1) / batch mode; "
            "private gateways: "
            + ", ".join(f"{n} ({g.source}, {g.instances} instance(s))" for n, g in gateways.items())
        )
        columns = ("target", "events/req", "req/s", "events/s", "p50 ms", "p99 ms", "non-2xx", "CPU ms/ev")
        header = f"{columns[0]:<10} " + " ".join(f"{c:>10}" for c in columns[1:]) + "  load"
        print(header)
        print("-" * len(header))
        runs = [(t, int(b)) for b in args.batches.split(",") for t in measured] * args.rounds
        for target, batch in runs:
            if target == "noop" and batch != 1:
                continue
            # Behind nginx's port are nginx's processes, not the gateway's: no CPU figure for them.
            port = None if target.startswith("nginx") else measure.port_of(urls[target])
            cpu_before = measure.function_cpu_seconds(port) if port else None
            r = run_wrk(urls[target], batch, args, access_token)
            cpu_after = measure.function_cpu_seconds(port) if port else None
            seconds = r["duration_us"] / 1e6
            ok = r["requests"] - r["non_2xx"]
            cells = (
                f"{batch}",
                f"{r['requests'] / seconds:.1f}",
                f"{ok * batch / seconds:.1f}",
                f"{r['p50_us'] / 1000:.1f}",
                f"{r['p99_us'] / 1000:.1f}",
                f"{r['non_2xx'] + r['socket_errors']}",
                f"{1000 * (cpu_after[0] - cpu_before[0]) / max(ok * batch, 1):.3f}"
                if cpu_before is not None and cpu_after is not None
                else "-",
            )
            load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
            print(f"{target:<10} " + " ".join(f"{c:>10}" for c in cells) + f"  {load}", flush=True)
        if args.profile:
            for name, gateway in gateways.items():
                profile(name, gateway.url, gateway.process.pid, args, access_token, args.profile)
        written = {name: gateway.records() for name, gateway in gateways.items()}
    print("events/s counts only 2xx responses; non-2xx includes socket errors (429 = nginx rate limit).")
    print("CPU ms/ev: the gateway's processes (not nginx) per accepted event; load: 1/5/15 min averages.")
    print("records in the private topics (deleted now): " + ", ".join(f"{n} {c}" for n, c in written.items()))
    return 0 if isolation.finish(stack_topics) else 1


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-gateway"):
        sys.exit(main())
