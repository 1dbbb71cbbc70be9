"""ripple_consumer.http: every kind of consumer (Flask, ripple_server.aio, functions_framework.aio)
reads binary-mode attributes as the HTTP binding asks, refuses what it cannot mean with a problem
naming the attribute, and leaves structured-mode attributes (JSON, never percent-encoded) as they are.

These pin the hooks into functions-framework and ripple_server.aio (their module-level
`from_http`): an upgrade that moves one fails here, not silently in production.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ripple_consumer.http import create_app

FLASK_FUNCTION = """
import json, functions_framework

@functions_framework.cloud_event
def handle(event):
    with open("received.json", "w") as out:
        json.dump(dict(event.get_attributes()), out, default=str)
"""
ASYNC_FUNCTION = """
import json, functions_framework.aio

@functions_framework.aio.cloud_event
async def handle(event):
    with open("received.json", "w") as out:
        json.dump(dict(event.get_attributes()), out, default=str)
"""
RIPPLE_ASYNC_FUNCTION = """
import json
from ripple_server import aio

@aio.cloud_event
async def handle(event):
    with open("received.json", "w") as out:
        json.dump(dict(event.get_attributes()), out, default=str)
"""
SOURCES = {"flask": FLASK_FUNCTION, "aio": ASYNC_FUNCTION, "ripple-aio": RIPPLE_ASYNC_FUNCTION}
BINARY = {
    "ce-specversion": "1.0",
    "ce-type": "dev.ripple.test",
    "ce-id": "%C3%A9-1",
    "ce-source": "/caf%C3%A9/%C3%BC",
    "ce-subject": "caf%C3%A9%20%C3%97%20%F0%9F%98%80",
    "ce-color": "gr%C3%BCn",
    "content-type": "application/json",
}


@pytest.fixture(params=list(SOURCES))
def function(request, tmp_path, monkeypatch):
    source = tmp_path / "main.py"
    source.write_text(SOURCES[request.param])
    monkeypatch.chdir(tmp_path)
    app = create_app(str(source))
    if request.param == "flask":
        client = app.test_client()
        post = lambda headers, body: client.post("/", headers=headers, data=body)  # noqa: E731
    else:
        client = TestClient(app)

        def post(headers, body):  # header bytes as sent: a str above 0x7E is one Latin-1 byte
            return client.post(
                "/", headers={k: v.encode("latin-1") for k, v in headers.items()}, content=body
            )

    return post, tmp_path / "received.json"


def received(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())


def test_binary_mode_attributes_are_percent_decoded(function):
    post, out = function
    response = post(BINARY, b"{}")
    assert response.status_code == 200
    attributes = received(out)
    assert attributes["id"] == "é-1" and attributes["source"] == "/café/ü"
    assert attributes["subject"] == "café \u00d7 😀" and attributes["color"] == "grün"


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("ce-subject", "caf%E9", "ce-subject: the percent-encoded bytes are not UTF-8"),  # Latin-1
        ("ce-color", "gr%C3", "ce-color: the percent-encoded bytes are not UTF-8"),
        ("ce-subject", "tab%09end", "ce-subject: U+0009"),
    ],
)
def test_an_undecodable_attribute_is_a_problem_naming_it(function, header, value, reason):
    post, out = function
    response = post({**BINARY, header: value}, b"{}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = json.loads(response.data if hasattr(response, "data") else response.content)
    assert problem["type"] == "https://ripple.dev/problems/malformed-event"
    assert problem["detail"].startswith(reason), problem
    assert not out.exists()


def test_raw_utf8_as_knatives_go_and_java_senders_write_it_is_taken(function):
    post, out = function
    raw = {name: value.encode().decode("latin-1") for name, value in {"ce-subject": "café 😀"}.items()}
    assert post({**BINARY, **raw}, b"{}").status_code == 200
    assert received(out)["subject"] == "café 😀"


def test_structured_mode_attributes_stay_as_sent(function):
    post, out = function
    event = {"specversion": "1.0", "type": "t", "id": "100%25", "source": "/caf%C3%A9", "subject": "é"}
    response = post({"content-type": "application/cloudevents+json"}, json.dumps(event).encode())
    assert response.status_code == 200
    attributes = received(out)
    assert attributes["id"] == "100%25" and attributes["source"] == "/caf%C3%A9"
    assert attributes["subject"] == "é"
