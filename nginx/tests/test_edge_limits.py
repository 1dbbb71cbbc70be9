"""The edge's limits against the real gateway, through private nginx instances.

Each test starts its own nginx (the project's template, a profile with small limits) on a free
port in front of the real gateway of the local stack, so buckets are fresh and tests do not
fight over the shared edge. Clients are told apart by their source address: every loopback
address 127.0.0.0/8 can be bound on Linux. Rates are per minute and bursts small, so the counts
below do not depend on how fast the machine is (assertions count statuses, never time them; the
only allowance is one more token per minute the test happened to run).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest.measure import free_port
from ripple_stack.components import nginx as edge
from ripple_stack.components.functions import knative_functions

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
# Rates per minute: a test that takes less than a minute sees exactly rate-burst arithmetic.
GENEROUS = {"RATE_PER_ADDRESS": "6000r/m", "BURST_PER_ADDRESS": "100", "DELAY_PER_ADDRESS": "nodelay"}
GENEROUS_CLIENT = {"RATE_PER_CLIENT": "6000r/m", "BURST_PER_CLIENT": "100", "DELAY_PER_CLIENT": "nodelay"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict:
        assert self.headers.get("content-type", "").startswith(PROBLEM), self
        return json.loads(self.body)


@dataclass
class Edge:
    host: str
    port: int
    run_dir: Path

    def post(
        self,
        token: str | None,
        source: str = "127.0.0.1",
        body: bytes | None = None,
        path: str = "/",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One POST of a page-view event (binary mode) on a fresh connection from `source`."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=(source, 0))
        sent = {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "/tests/edge",
            "ce-type": "dev.ripple.shop.page.viewed",
            "content-type": "application/json",
            "connection": "close",
            **({"authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        }
        payload = body if body is not None else json.dumps({"sessionId": "s1", "path": "/"}).encode()
        try:
            connection.request("POST", path, body=payload, headers=sent)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def access_log(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir / "access.log").read_text().splitlines()]


EdgeFactory = Callable[..., AbstractContextManager[Edge]]


@pytest.fixture
def private_edge(stack) -> EdgeFactory:
    """Start a private nginx: private_edge(profile="strict", **overrides) as a context manager."""
    from contextlib import contextmanager

    @contextmanager
    def start(profile: str = "strict", **overrides: str) -> Iterator[Edge]:
        port = free_port()
        with edge.private_edge(
            profile,
            gateway=f"{stack.settings.host}:{stack.settings.ports['gateway']}",
            listen=f"127.0.0.1:{port}",
            status_listen=f"127.0.0.1:{free_port()}",
            overrides=overrides,
        ) as run_dir:
            yield Edge("127.0.0.1", port, run_dir)

    return start


@pytest.fixture(scope="module")
def gateway_declared() -> None:
    if not any(function.name == "gateway" for function in knative_functions()):
        pytest.skip("the gateway function is not declared yet (knative/gateway/service.yaml)")


def forged_token(subject: str) -> str:
    """A JWT-shaped token nginx can decode but the gateway refuses (no valid signature)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'sub': subject, 'iss': 'forged'})}.c2ln"


def allowance(started: float) -> int:
    """Tokens a 1r/m bucket regained while the test ran (0 for a test shorter than a minute)."""
    return int((time.monotonic() - started) // 60) + 1


def assert_rate_limited(reply: Reply) -> None:
    assert reply.status == 429, reply
    assert reply.headers.get("retry-after", "").isdigit(), reply.headers
    problem = reply.problem()
    assert problem["type"] == "https://ripple.dev/problems/rate-limited"
    assert problem["status"] == 429 and problem["title"] and problem["detail"]


def test_traffic_inside_the_limits_is_never_rejected(private_edge, stack, gateway_declared):
    token = stack.client_token()
    with private_edge("strict") as proxy:
        replies = [proxy.post(token, "127.0.0.2") for _ in range(10)]  # inside the burst of strict
    assert Counter(r.status for r in replies) == {202: 10}, [r.body for r in replies if r.status != 202]


def test_a_client_above_its_rate_is_limited_and_another_is_not(private_edge, stack, gateway_declared):
    greedy, fair = stack.client_token(), stack.user_token("alice")
    with private_edge("strict", RATE_PER_CLIENT="1r/m", BURST_PER_CLIENT="4", **GENEROUS) as proxy:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            greedy_replies = list(pool.map(lambda _: proxy.post(greedy, "127.0.0.2"), range(15)))
        # Alice is on her own bucket (other subject) and address: the greedy client cost her nothing.
        fair_replies = [proxy.post(fair, "127.0.0.3") for _ in range(5)]
        log = proxy.access_log()
    statuses = Counter(r.status for r in greedy_replies)
    assert set(statuses) <= {202, 429}, greedy_replies
    assert 5 <= statuses[202] <= 4 + allowance(started), statuses
    for reply in greedy_replies:
        if reply.status == 429:
            assert_rate_limited(reply)
    assert Counter(r.status for r in fair_replies) == {202: 5}, fair_replies
    rejected = [entry for entry in log if entry["status"] == 429]
    assert len(rejected) == statuses[429]
    assert all(entry["limit_req_status"] == "REJECTED" and entry["request_id"] for entry in rejected)


def test_two_tokens_of_one_subject_share_a_bucket(private_edge, stack, gateway_declared):
    first, second = stack.client_token(), stack.client_token()
    assert first != second  # two tokens, one subject (the publisher's service account)
    with private_edge("strict", RATE_PER_CLIENT="1r/m", BURST_PER_CLIENT="2", **GENEROUS) as proxy:
        started = time.monotonic()
        spent = [proxy.post(first, "127.0.0.4") for _ in range(3)]
        # Another address does not help either: the bucket belongs to the subject.
        refused = [proxy.post(second, "127.0.0.5") for _ in range(3)]
        other_subject = proxy.post(stack.user_token("bob"), "127.0.0.5")
    assert [r.status for r in spent] == [202, 202, 202], spent
    assert sum(r.status == 429 for r in refused) >= 3 - (allowance(started) - 1), refused
    assert other_subject.status == 202, other_subject


def test_many_tokens_cannot_escape_the_per_address_limit(private_edge, stack):
    with private_edge("strict", RATE_PER_ADDRESS="1r/m", BURST_PER_ADDRESS="3", **GENEROUS_CLIENT) as proxy:
        started = time.monotonic()
        replies = [proxy.post(forged_token(f"subject-{n}"), "127.0.0.6") for n in range(10)]
        without_token = proxy.post(None, "127.0.0.6")
    passed = [r for r in replies if r.status != 429]
    # Passed requests reach the gateway, which refuses the forged tokens itself.
    assert 4 <= len(passed) <= 3 + allowance(started), [r.status for r in replies]
    for reply in replies:
        if reply.status == 429:
            assert_rate_limited(reply)
    assert_rate_limited(without_token)


def test_an_oversized_body_is_refused_before_the_gateway(private_edge, stack):
    request_id = f"edge-test-{uuid.uuid4()}"
    limit = edge.gateway_max_body_bytes()
    with private_edge("strict") as proxy:
        reply = proxy.post(
            stack.client_token(), body=b"x" * (limit + 1), headers={"X-Request-ID": request_id}
        )
        # The line is logged once nginx has drained the unread body (lingering close).
        deadline = time.monotonic() + 10
        log = proxy.access_log()
        while not any(e["request_id"] == request_id for e in log) and time.monotonic() < deadline:
            time.sleep(0.1)
            log = proxy.access_log()
    assert reply.status == 413
    problem = reply.problem()
    assert problem["type"] == "https://ripple.dev/problems/payload-too-large"
    assert str(limit) in problem["detail"] and problem["requestId"] == request_id
    # nginx answered alone: the request never had an upstream.
    entry = next(e for e in log if e["request_id"] == request_id)
    assert entry["status"] == 413 and entry["upstream_addr"] == ""


def test_too_many_connections_from_one_address_are_limited(private_edge, stack):
    with private_edge("strict", CONN_PER_ADDRESS="2") as proxy:
        holders = []
        try:
            # Two requests whose bodies never finish arriving: each holds a connection slot.
            for _ in range(2):
                holder = socket.create_connection((proxy.host, proxy.port), source_address=("127.0.0.7", 0))
                holder.sendall(
                    b"POST / HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{"
                )
                holders.append(holder)
            # nginx counts a slot once it has read a holder's headers: ask until it has.
            deadline = time.monotonic() + 10
            while (limited := proxy.post(None, "127.0.0.7")).status != 429 and time.monotonic() < deadline:
                time.sleep(0.1)
            other_address = proxy.post(None, "127.0.0.8")
        finally:
            for holder in holders:
                holder.close()
        assert_rate_limited(limited)
        assert "connections" in limited.problem()["detail"]
        assert other_address.status != 429
        # Slots are freed when the slow requests go away.
        deadline = time.monotonic() + 10
        while (again := proxy.post(None, "127.0.0.7")).status == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert again.status != 429


def test_query_route_without_query_function_is_a_problem_not_html(private_edge):
    with private_edge("strict") as proxy:
        reply = proxy.post(None, path="/query/v1/aggregates/totals")
    assert reply.status == 502
    assert reply.problem()["type"] == "https://ripple.dev/problems/upstream-unavailable"


def test_gateway_down_is_a_problem_and_back_is_served(private_edge, stack, gateway_declared):
    token = stack.client_token()
    with private_edge("strict") as proxy:
        with stack.stopped("gateway"):
            down = proxy.post(token)
        back = proxy.post(token)
    assert down.status in (502, 503), down
    problem = down.problem()
    assert problem["type"] == "https://ripple.dev/problems/upstream-unavailable"
    assert problem["status"] == down.status
    assert back.status == 202, back


def test_request_id_reaches_the_gateway_log(private_edge, stack, gateway_declared):
    request_id = f"edge-test-{uuid.uuid4()}"
    with private_edge("strict") as proxy:
        given = proxy.post(stack.client_token(), headers={"X-Request-ID": request_id})
        generated = proxy.post(stack.client_token())
    assert given.status == 202 and given.headers["x-request-id"] == request_id
    assert generated.status == 202 and len(generated.headers["x-request-id"]) == 32
    gateway_log = stack.settings.log_dir / "gateway.log"
    deadline = time.monotonic() + 10
    while request_id not in gateway_log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert request_id in gateway_log.read_text(errors="replace")


def scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def rejections_counted(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("ripple_edge_responses_total{") and 'status="429"' in line
    )


def prometheus_up(stack, job: str) -> str | None:
    import urllib.parse

    query = urllib.parse.urlencode({"query": f'up{{job="{job}"}}'})
    result = json.loads(scrape(f"{stack.prometheus_url}/api/v1/query?{query}"))["data"]["result"]
    return result[0]["value"][1] if result else None


def test_shared_edge_exports_connections_and_rejections_to_prometheus(stack):
    host, ports = stack.settings.host, stack.settings.ports
    stub = scrape(f"http://{host}:{ports['nginx_exporter']}/metrics")
    assert "nginx_up 1" in stub and "nginx_connections_active" in stub
    log_exporter = f"http://{host}:{ports['nginx_log_exporter']}/metrics"
    before = rejections_counted(scrape(log_exporter))
    # An address of its own (127.0.0.9): other users of the shared edge keep their buckets.
    shared = Edge(host, ports["nginx"], Path())
    limits = edge.selected_profile()[1]
    # 32 at a time, four bursts' worth: either the rate or the connection limit refuses some,
    # however fast the gateway answers the admitted ones.
    with ThreadPoolExecutor(max_workers=32) as pool:
        count = 4 * int(limits["BURST_PER_ADDRESS"]) + 50
        replies = list(pool.map(lambda _: shared.post(None, "127.0.0.9"), range(count)))
    rejected = sum(r.status == 429 for r in replies)
    assert rejected > 0
    deadline = time.monotonic() + 15
    while rejections_counted(scrape(log_exporter)) < before + rejected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rejections_counted(scrape(log_exporter)) >= before + rejected
    deadline = time.monotonic() + 30
    while {prometheus_up(stack, "nginx"), prometheus_up(stack, "nginx-log")} != {"1"}:
        assert time.monotonic() < deadline, "Prometheus does not scrape the nginx exporters"
        time.sleep(1)


def test_shared_edge_routes_query_to_the_query_function(stack):
    import urllib.error
    import urllib.request

    if edge.query_address(stack.settings) == edge.NOT_DEPLOYED_ADDRESS:
        pytest.skip("no query function is declared in knative/")
    # No token: the query function's own 401 problem shows the request reached it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.nginx_url}/query/v1/aggregates/totals", timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["X-Request-ID"]


def test_malformed_requests_get_problems_not_html(private_edge):
    with private_edge("strict") as proxy:
        too_large = proxy.post(None, headers={"X-Padding": "a" * 20000})
        too_long = proxy.post(None, path="/" + "a" * 20000)
    assert too_large.status == 400
    assert too_large.problem()["type"] == "https://ripple.dev/problems/bad-request"
    assert too_long.status == 414
    assert too_long.problem()["type"] == "https://ripple.dev/problems/uri-too-long"
