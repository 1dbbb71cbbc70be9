"""wrk against the gateway, directly and through nginx, single events and batches of 100.

Fetches a token for ripple-publisher from the local Keycloak (client credentials, secret from
.ripple/secrets.env), runs loadtest/gateway/events.lua for each combination and prints a table.
Usage: .venv/bin/python -m loadtest.gateway.run [--duration 15] [--threads 2] [--connections 32]
           [--url old=http://127.0.0.1:18971 --rounds 2]   (A/B against another build, in turn)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from keycloak import KeycloakOpenID

from loadtest import measure
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import load_settings

SCRIPT = Path(__file__).resolve().parent / "events.lua"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--targets", default="gateway,nginx", help="comma separated: gateway, nginx")
    parser.add_argument("--batches", default="1,100", help="events per request, comma separated")
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another gateway to measure in the same run (e.g. a build under comparison); repeatable",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the targets in turn (A/B/A/B...)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is not installed: run `make up` (it installs the Debian package) or apt-get install wrk."
        )
    settings = load_settings()
    access_token = token(settings, load_secrets(settings))
    urls = {"gateway": settings.gateway_url, "nginx": settings.nginx_url}
    extra = dict(item.split("=", 1) for item in args.url)
    urls.update(extra)
    targets = [t for t in args.targets.split(",") if t] + list(extra)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, binary mode (1) / batch mode (100)")
    columns = (
        "target",
        "events/req",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "CPU ms/ev",
        "load",
    )
    header = f"{columns[0]:<8} " + " ".join(f"{c:>10}" for c in columns[1:])
    print(header)
    print("-" * len(header))
    runs = [(t, int(b)) for b in args.batches.split(",") for t in targets] * args.rounds
    for target, batch in runs:
        # Behind nginx's port are nginx's processes, not the gateway's: no CPU figure for them.
        port = None if target == "nginx" else measure.port_of(urls[target])
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
            f"{os.getloadavg()[0]:.1f}",
        )
        print(f"{target:<8} " + " ".join(f"{c:>10}" for c in cells), flush=True)
    print("events/s counts only 2xx responses; non-2xx includes socket errors (429 = nginx rate limit).")
    print("CPU ms/ev: the gateway's processes (not nginx, not a local activator) per accepted event.")


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-gateway"):
        main()
