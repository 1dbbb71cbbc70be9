"""ripple_server.aio answers every request as functions_framework.aio's app does (a table of
requests sent to both, built from the same function), ripple_server picks the app by what the
source imports, and a function served through ripple_server.aio never imports Flask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import functions_framework.aio
import pytest
import ripple_server
from cloudevents.http import CloudEvent
from ripple_server import aio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

FUNCTIONS = Path(__file__).resolve().parents[2]


async def http_function(request: Request):
    what = request.query_params.get("answer", "response")
    if what == "str":
        return "text"
    if what == "dict":
        return {"a": 1}
    if what == "tuple":
        return ({"b": 2}, 201)
    if what == "bytes-tuple":
        return (b"raw", 202)
    if what == "none":
        return None
    if what == "raise":
        raise RuntimeError("boom")
    return PlainTextResponse(f"{request.method} {request.url.path}", status_code=203)


def sync_http_function(request: Request):
    return "from a thread"


async def cloud_event_function(event: CloudEvent) -> None:
    if event["type"] == "raise":
        raise RuntimeError("boom")
    if event["type"] == "refuse":
        raise HTTPException(409, "taken", {"x-why": "duplicate"})
    if event["type"] == "empty":
        raise HTTPException(304)


def both_apps(function, signature_type: str):
    """(functions-framework's app, ripple_server.aio's app) of the same function."""
    return (
        functions_framework.aio._create_asgi_app_with_function(function, signature_type, False),
        aio.create_app(function, signature_type),
    )


def answer(app, method: str, path: str, **kwargs) -> tuple[int, str, str | None, bytes]:
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(method, path, **kwargs)
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        response.headers.get("x-google-status"),
        response.content,
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("POST", "/a/b"),
        ("PUT", "/"),
        ("HEAD", "/x"),
        ("OPTIONS", "/"),
        ("GET", "/?answer=str"),
        ("GET", "/?answer=dict"),
        ("GET", "/?answer=tuple"),
        ("GET", "/?answer=bytes-tuple"),
        ("GET", "/?answer=none"),
        ("GET", "/?answer=raise"),
        ("GET", "/robots.txt"),
        ("GET", "/favicon.ico"),
        ("POST", "/robots.txt"),
        ("TRACE", "/"),
    ],
)
def test_an_http_function_is_answered_as_functions_framework_answers(method, path):
    framework, ours = both_apps(http_function, "http")
    assert answer(ours, method, path) == answer(framework, method, path)


def test_a_synchronous_function_runs_and_is_answered_the_same():
    framework, ours = both_apps(sync_http_function, "http")
    assert (
        answer(ours, "GET", "/")
        == answer(framework, "GET", "/")
        == (200, "", None, b"from a thread")  # Response(str): no media type, as there
    )


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/s",
    "ce-type": "t",
    "content-type": "application/json",
}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("POST", "/", BINARY, b"{}"),
        ("POST", "/any/path", BINARY, b"{}"),
        ("POST", "/", {**BINARY, "ce-type": "raise"}, b"{}"),
        ("POST", "/", {**BINARY, "ce-type": "refuse"}, b"{}"),
        ("POST", "/", {**BINARY, "ce-type": "empty"}, b"{}"),
        ("POST", "/", {**BINARY, "ce-specversion": "0.3"}, b"{}"),
        ("POST", "/", {**BINARY, "ce-specversion": "2.0"}, b"{}"),
        ("POST", "/", {**BINARY, "content-type": "text/plain"}, b"not json"),
        ("POST", "/", {**BINARY, "ce-id": ""}, b""),
        ("POST", "/healthz", BINARY, b"{}"),
        ("PUT", "/", BINARY, b"{}"),
        (
            "POST",
            "/",
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "refuse"}',
        ),
        ("POST", "/", {"content-type": "application/json"}, b"{}"),  # not a CloudEvent
        ("POST", "/", {"content-type": "application/cloudevents+json"}, b"{not json"),
        ("GET", "/", {}, b""),
        ("GET", "/x", {}, b""),
    ],
)
def test_a_cloud_event_function_is_answered_as_functions_framework_answers(method, path, headers, body):
    framework, ours = both_apps(cloud_event_function, "cloudevent")
    sent = {"headers": headers, "content": body}
    assert answer(ours, method, path, **sent) == answer(framework, method, path, **sent)


@pytest.mark.parametrize(
    ("source", "framework"),
    [
        ("import functions_framework\n", True),
        ("import functions_framework.aio\n", True),
        ("from functions_framework import aio\n", True),
        ("from functions_framework.aio import cloud_event\n", True),
        ("def f():\n    import functions_framework\n", True),
        ("from ripple_server import aio\n", False),
        ("import functions_frameworks_other\nfrom . import functions_framework\n", False),
    ],
)
def test_the_app_is_chosen_by_what_the_source_imports(tmp_path, source, framework):
    (tmp_path / "main.py").write_text(source)
    assert ripple_server.uses_functions_framework(str(tmp_path / "main.py")) is framework


def test_a_function_without_the_decorator_says_what_to_do(tmp_path):
    (tmp_path / "main.py").write_text("async def handle(request):\n    return 'x'\n")
    with pytest.raises(SystemExit, match=r"decorated with @ripple_server\.aio\.http"):
        ripple_server.load_app(str(tmp_path / "main.py"), "handle", "http")


def test_a_missing_source_says_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="does not exist: pass --source"):
        ripple_server.load_app(str(tmp_path / "nope.py"), "handle", "http")


def test_wrap_app_of_the_source_is_what_is_served(tmp_path):
    (tmp_path / "main.py").write_text(
        "from ripple_server import aio\n"
        "@aio.http\nasync def handle(request):\n    return 'inner'\n"
        "class Outer:\n    def __init__(self, app):\n        self.app = app\n"
        "def wrap_app(app):\n    return Outer(app)\n"
    )
    app = ripple_server.load_app(str(tmp_path / "main.py"), "handle", "http")
    assert type(app).__name__ == "Outer" and answer(app.app, "GET", "/")[3] == b"inner"


def test_serving_a_ripple_aio_function_imports_no_flask(tmp_path):
    (tmp_path / "main.py").write_text(
        "from ripple_server import aio\n@aio.cloud_event\nasync def handle(e):\n    pass\n"
    )
    script = (
        "import sys, ripple_server\n"
        "app = ripple_server.load_app('main.py', 'handle', 'cloudevent')\n"
        "from ripple_consumer.http import add_routes, decode_binary_attributes\n"
        "add_routes(app); decode_binary_attributes(app)\n"
        "print(sorted(set(sys.modules) & {'flask', 'werkzeug', 'functions_framework'}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
