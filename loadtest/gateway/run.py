"""wrk against the gateway, directly and through nginx, single events and batches of 100.

Fetches a token for ripple-publisher from the local Keycloak (client credentials, secret from
.ripple/secrets.env), runs loadtest/gateway/events.lua for each combination and prints a table.
Usage: .venv/bin/python loadtest/gateway/run.py [--duration 15] [--threads 2] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from keycloak import KeycloakOpenID

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
    env = os.environ | {"TOKEN": access_token, "BATCH": str(batch), "RUN_ID": f"wrk{time.time_ns()}"}
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        url,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk failed for {url}:\n{result.stdout}\n{result.stderr}")
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--targets", default="gateway,nginx", help="comma separated: gateway, nginx")
    parser.add_argument("--batches", default="1,100", help="events per request, comma separated")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is not installed: run `make up` (it installs the Debian package) or apt-get install wrk."
        )
    settings = load_settings()
    access_token = token(settings, load_secrets(settings))
    urls = {"gateway": settings.gateway_url, "nginx": settings.nginx_url}
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, binary mode (1) / batch mode (100)")
    columns = ("target", "events/req", "req/s", "events/s", "p50 ms", "p99 ms", "non-2xx")
    header = f"{columns[0]:<8} " + " ".join(f"{c:>10}" for c in columns[1:])
    print(header)
    print("-" * len(header))
    for target in args.targets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            r = run_wrk(urls[target], batch, args, access_token)
            seconds = r["duration_us"] / 1e6
            ok = r["requests"] - r["non_2xx"]
            cells = (
                f"{batch}",
                f"{r['requests'] / seconds:.1f}",
                f"{ok * batch / seconds:.1f}",
                f"{r['p50_us'] / 1000:.1f}",
                f"{r['p99_us'] / 1000:.1f}",
                f"{r['non_2xx'] + r['socket_errors']}",
            )
            print(f"{target:<8} " + " ".join(f"{c:>10}" for c in cells), flush=True)
    print("events/s counts only 2xx responses; non-2xx includes socket errors (429 = nginx rate limit).")


if __name__ == "__main__":
    main()
