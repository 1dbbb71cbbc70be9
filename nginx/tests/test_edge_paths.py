"""The edge serves the API paths only: every path the functions serve, walked through nginx.

The paths come from the functions' own route tables (ripple_gateway.app.ROUTES,
ripple_query.app.ROUTES), so a route added later is walked too. Public: the gateway's POST / and
its OpenAPI document, the query function's /v1/ API (reached as /query/v1/...). Everything else
(probes, metrics) must answer the edge's own 404 while the function itself, on its internal
address, does serve it: that is where the kubelet and Prometheus read it.
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit

import pytest

from ripple_stack.components import nginx as edge
from ripple_stack.settings import REPO_ROOT

# Each function's own package lives next to its main.py, as in its image.
sys.path[:0] = [str(REPO_ROOT / "functions" / "gateway"), str(REPO_ROOT / "functions" / "query")]
from ripple_gateway.app import ROUTES as GATEWAY_ROUTES  # noqa: E402
from ripple_query.app import ROUTES as QUERY_ROUTES  # noqa: E402

pytestmark = pytest.mark.integration

EDGE_NOT_FOUND = "https://ripple.dev/problems/not-found"
# (function, path on the function) the edge passes on; anything else stays internal.
PUBLIC = {("gateway", "/"), ("gateway", "/openapi.yaml")} | {
    ("query", path) for path in QUERY_ROUTES if path.startswith("/v1/")
}
# Where each function's paths appear on the edge.
EDGE_PREFIX = {"gateway": "", "query": "/query"}


def served_paths() -> list[tuple[str, str, str]]:
    """(function, method, path) for every route the functions serve."""
    walked = [("gateway", method, path) for path, methods in GATEWAY_ROUTES.items() for method in methods]
    walked += [("query", "GET", path) for path in QUERY_ROUTES]
    return walked


def request(base_url: str, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request without credentials; POST carries a small JSON body."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    body = b"{}" if method == "POST" else None
    headers = {"content-type": "application/json", "connection": "close"} if body else {"connection": "close"}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def refused_by_the_edge(status: int, headers: dict[str, str], body: bytes) -> bool:
    """The edge's own 404 problem (a function's 404 would name no edge)."""
    if status != 404 or not headers.get("content-type", "").startswith("application/problem+json"):
        return False
    problem = json.loads(body)
    return problem.get("type") == EDGE_NOT_FOUND and "at the edge" in problem.get("detail", "")


def test_the_walk_covers_probes_metrics_and_the_api():
    walked = {(function, path) for function, _, path in served_paths()}
    for function in ("gateway", "query"):
        assert {(function, "/healthz"), (function, "/readyz"), (function, "/metrics")} <= walked
    assert walked > PUBLIC


@pytest.mark.parametrize(("function", "method", "path"), served_paths(), ids=lambda v: str(v))
def test_the_edge_passes_the_api_and_nothing_else(stack, function, method, path):
    internal = stack.gateway_url if function == "gateway" else f"http://{stack.settings.host}:"
    if function == "query":
        if edge.query_address(stack.settings) == edge.NOT_DEPLOYED_ADDRESS:
            pytest.skip("no query function is declared in knative/")
        internal += str(stack.settings.ports["query"])
    # The function serves the path on its internal address (a probe may say 503, never 404).
    direct = request(internal, method, path)
    assert direct[0] != 404, f"{function} does not serve {path}: {direct}"

    through_edge = request(stack.nginx_url, method, EDGE_PREFIX[function] + path)
    if (function, path) in PUBLIC:
        assert not refused_by_the_edge(*through_edge), f"the edge refuses the API path {path}"
        assert through_edge[0] < 500, through_edge
        assert through_edge[1].get("x-request-id"), through_edge
    else:
        assert refused_by_the_edge(*through_edge), f"the edge lets internal {path} through: {through_edge}"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/query/", "/query/v2/x", "/admin"])
def test_unknown_and_internal_paths_are_the_edges_404(stack, path):
    assert refused_by_the_edge(*request(stack.nginx_url, "GET", path))
