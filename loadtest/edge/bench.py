"""Edge benchmark (`make bench-edge`): a greedy and a fair client at the same time, per profile.

For each profile a private nginx is rendered from nginx/ (the same template and profile files as
the shared edge) in front of a private gateway (loadtest/isolation.py: the stack's gateway function,
started as the stack starts it, on its own port and writing to its own topics, deleted at the end;
the run ends by checking that the stack's topics did not grow), and two wrk runs hit it at once:

- greedy: the ripple-publisher service account from address 198.51.100.1 on GREEDY_CONNECTIONS
  connections, each pausing GREEDY_DELAY_MS between requests (thousands of requests/s, a hundred
  times any profile's limit; 0 = flood, which on a small machine mostly measures wrk and nginx
  fighting the gateway for CPU);
- fair: user alice from address 198.51.100.2, one connection pausing FAIR_DELAY_MS between
  requests (at most ~8 requests/s, inside every profile's per-client rate).

Each profile first runs the fair client alone (its baseline), then both together.

Locally every connection comes from 127.0.0.1, so the clients' addresses travel in
X-Forwarded-For and the benchmark's nginx trusts that header from 127.0.0.1 only — exactly how the
cluster's nginx trusts the OpenShift router (TRUSTED_PROXIES). The shared edge trusts nothing.

Environment: EDGE_BENCH_SECONDS (default 20), EDGE_BENCH_GREEDY_CONNECTIONS (default 8),
EDGE_BENCH_GREEDY_DELAY_MS (default 2), EDGE_BENCH_FAIR_DELAY_MS (default 120).
Arguments: profile names (default: every profile).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from keycloak import KeycloakOpenID

from loadtest import isolation
from loadtest.measure import free_port, http_status, percentile
from ripple_stack.components import nginx as edge
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import load_settings

SCRIPT = Path(__file__).with_name("edge.lua")
SECONDS = int(os.environ.get("EDGE_BENCH_SECONDS", "20"))
GREEDY_CONNECTIONS = int(os.environ.get("EDGE_BENCH_GREEDY_CONNECTIONS", "8"))
GREEDY_DELAY_MS = int(os.environ.get("EDGE_BENCH_GREEDY_DELAY_MS", "2"))
FAIR_DELAY_MS = int(os.environ.get("EDGE_BENCH_FAIR_DELAY_MS", "120"))
ADDRESSES = {"greedy": "198.51.100.1", "fair": "198.51.100.2", "fair-alone": "198.51.100.3"}
RESULT = re.compile(r"^EDGE_RESULT (.*)$", re.MULTILINE)


def wrk(url: str, label: str, token: str, address: str, connections: int, delay_ms: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "EDGE_CLIENT": label,
        "EDGE_TOKEN": token,
        "EDGE_CLIENT_ADDRESS": address,
        "EDGE_DELAY_MS": str(delay_ms),
    }
    # One connection per thread: the Lua script times each request between request() and response().
    # wrk's default 2 s timeout would abort requests that burst-tolerant profiles queue on purpose.
    command = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{SECONDS}s", "--timeout", "30s"]
    command += ["-s", str(SCRIPT), url]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def nginx_times(access_log: Path) -> dict[str, dict[str, str]]:
    """p50/p99 of nginx's own $request_time for admitted requests, per client address.

    The wrk figures include the load generator's own scheduling on a busy machine; these do not.
    """
    times: dict[str, list[float]] = {}
    for line in access_log.read_text().splitlines():
        entry = json.loads(line)
        if 200 <= entry["status"] < 300:
            times.setdefault(entry["remote_addr"], []).append(entry["request_time"] * 1000)
    return {
        address: {f"nginx_p{p}_ms": f"{percentile(values, p):.1f}" for p in (50, 99)}
        for address, values in times.items()
    }


def parse(output: str) -> dict[str, str]:
    match = RESULT.search(output)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{output}")
    return dict(item.split("=", 1) for item in match.group(1).split())


def main(profiles: list[str]) -> int:
    if shutil.which("wrk") is None:
        print("wrk is missing: run `make prereqs` (Debian package wrk).", file=sys.stderr)
        return 2
    settings = load_settings()
    secrets = load_secrets(settings)
    stack_topics = isolation.StackTopics(settings.kafka_bootstrap)
    try:
        with isolation.PrivateGateway(settings, secrets) as gateway:
            status = run_profiles(settings, secrets, gateway.url, profiles)
    except isolation.IsolationError as error:
        print(f"bench-edge: {error}", file=sys.stderr)
        return 2
    return status if isolation.finish(stack_topics) else 1


def run_profiles(settings, secrets, gateway_url: str, profiles: list[str]) -> int:
    if http_status(f"{gateway_url}/readyz") != 200:
        print("The private gateway is not ready: check `make status`.", file=sys.stderr)
        return 2
    publisher = KeycloakOpenID(
        server_url=settings.keycloak_url,
        realm_name=settings.keycloak_realm,
        client_id="ripple-publisher",
        client_secret_key=secrets["RIPPLE_PUBLISHER_CLIENT_SECRET"],
    ).token(grant_type="client_credentials")["access_token"]
    alice = KeycloakOpenID(
        server_url=settings.keycloak_url, realm_name=settings.keycloak_realm, client_id="ripple-cli"
    ).token("alice", secrets["RIPPLE_TEST_USER_PASSWORD"])["access_token"]

    rows = []
    for profile in profiles or edge.profile_names():
        limits = edge.read_profile(profile)
        port = free_port()
        print(
            f"profile {profile}: per address {limits['RATE_PER_ADDRESS']} burst "
            f"{limits['BURST_PER_ADDRESS']} {limits['DELAY_PER_ADDRESS']}, "
            f"per client {limits['RATE_PER_CLIENT']} burst "
            f"{limits['BURST_PER_CLIENT']} {limits['DELAY_PER_CLIENT']}; {SECONDS}s…",
            flush=True,
        )
        with edge.private_edge(
            profile,
            gateway=gateway_url.removeprefix("http://"),
            listen=f"127.0.0.1:{port}",
            status_listen=f"127.0.0.1:{free_port()}",
            trusted_proxies="127.0.0.1",
        ) as run_dir:
            url = f"http://127.0.0.1:{port}/"
            alone = wrk(url, "fair-alone", alice, ADDRESSES["fair-alone"], 1, FAIR_DELAY_MS).communicate()[0]
            greedy = wrk(url, "greedy", publisher, ADDRESSES["greedy"], GREEDY_CONNECTIONS, GREEDY_DELAY_MS)
            fair = wrk(url, "fair", alice, ADDRESSES["fair"], 1, FAIR_DELAY_MS)
            outputs = [alone, *(process.communicate()[0] for process in (greedy, fair))]
            server_side = nginx_times(run_dir / "access.log")
        for output in outputs:
            row = {"profile": profile, **parse(output)}
            row.update(server_side.get(ADDRESSES[row["client"]], {}))
            rows.append(row)

    columns = [
        ("profile", "profile"),
        ("client", "client"),
        ("rps", "req/s"),
        ("admitted_rps", "2xx/s"),
        ("statuses", "status mix"),
        ("admitted_p50_ms", "2xx p50 ms"),
        ("admitted_p99_ms", "2xx p99 ms"),
        ("rejected_p50_ms", "429 p50 ms"),
        ("rejected_p99_ms", "429 p99 ms"),
        ("nginx_p50_ms", "nginx 2xx p50"),
        ("nginx_p99_ms", "nginx 2xx p99"),
        ("socket_errors", "sock err"),
    ]
    widths = [max(len(title), *(len(row.get(key, "-")) for row in rows)) for key, title in columns]
    print()
    print("  ".join(title.ljust(width) for (_, title), width in zip(columns, widths, strict=True)))
    for row in rows:
        cells = (row.get(key, "-").ljust(width) for (key, _), width in zip(columns, widths, strict=True))
        print("  ".join(cells))
    server_errors = re.compile(r"(^|,)5\d\d=")
    if any(server_errors.search(row["statuses"]) or row["socket_errors"] != "0" for row in rows):
        print(
            "\nwarning: 5xx answers or socket errors above come from the stack behind the edge (a component "
            "was down or overloaded during the run): these figures are not the edge's; rerun when "
            "`make status` is all ready.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    from ripple_stack.batch_runs import pushed_run  # duration and pass/fail to the Pushgateway

    with pushed_run("bench-edge"):
        sys.exit(main(sys.argv[1:]))
