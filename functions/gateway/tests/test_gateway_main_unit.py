"""main.py's ASGI app: POST / straight to the gateway, the rest through the framework's app
(ripple_server.aio), both answer the same (no Kafka or Keycloak needed: the requests fail before
either is used), and serving it imports no Flask."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ripple_server

MAIN = Path(__file__).resolve().parents[1] / "main.py"


@pytest.fixture(scope="module")
def app():
    threshold = gc.get_threshold()
    try:
        yield ripple_server.load_app(str(MAIN), "handle", "http")
    finally:
        gc.unfreeze()  # the gateway freezes what it built; the other tests need no such thing
        gc.set_threshold(*threshold)


def call(asgi, method: str, path: str, headers=(), body: bytes = b"") -> tuple[int, dict, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gateway"), *headers],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asgi(scope, receive, send))
    headers_out = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers_out, b"".join(m.get("body", b"") for m in sent[1:])


def test_post_events_skips_the_framework_and_answers_as_it_did(app):
    assert type(app).__name__ == "_PostEvents"
    request = ("POST", "/", [(b"content-type", b"application/json")], b"{}")
    fast = call(app, *request)
    framework = call(app.framework_app, *request)
    assert fast[0] == framework[0] == 401
    assert fast[2] == framework[2]
    assert fast[1]["content-type"] == framework[1]["content-type"] == "application/problem+json"
    assert fast[1]["www-authenticate"] == framework[1]["www-authenticate"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/healthz", 200), ("GET", "/robots.txt", 404), ("GET", "/", 405), ("POST", "/x", 404)],
)
def test_other_requests_take_the_framework_app(app, method, path, status):
    assert call(app, method, path)[0] == status


@pytest.mark.parametrize("path", ["/robots.txt", "/favicon.ico"])
def test_the_framework_paths_are_the_gateways_problems_too(app, path):
    status, headers, body = call(app, "GET", path)
    assert (status, headers["content-type"]) == (404, "application/problem+json")
    assert json.loads(body)["type"].endswith("/not-found")


def test_building_the_gateway_imports_no_flask():
    # A fresh interpreter: this test process has Flask from other tests. Kafka and Keycloak are
    # not needed to build the app (they are asked at the first /readyz).
    script = (
        "import sys, ripple_server; ripple_server.load_app('main.py', 'handle', 'http'); "
        "print(sorted(set(sys.modules) & {'flask', 'werkzeug', 'functions_framework', 'jsonschema'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(MAIN.parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=MAIN.parent, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
