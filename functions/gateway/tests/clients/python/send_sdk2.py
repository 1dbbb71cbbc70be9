"""Sends CloudEvents to the ripple gateway with the Python SDK 2.x and its v1 API.

The 2.x package (`pip install cloudevents`, what PyPI serves today) has a new API:
`cloudevents.core.v1.event.CloudEvent` and the HTTP binding of `cloudevents.core.bindings.http`
(binary and structured mode; it percent-encodes header values as the HTTP binding asks). It has no
batch writer: no batch requests. It runs in its own virtualenv (the project pins 1.12.0).

Reads a plan on stdin ({"url", "token", "requests": [{"mode", "events": [...]}]}) and prints one
JSON line per request: {"mode", "status", "body"}. Standard library only besides the SDK.
"""

from __future__ import annotations

import http.client
import json
import sys
from datetime import datetime
from urllib.parse import urlsplit

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent


def to_event(spec: dict) -> CloudEvent:
    attributes = {
        "id": spec["id"],
        "source": spec["source"],
        "type": spec["type"],
        "subject": spec["subject"],
        # The 2.x event takes time as a datetime.
        "time": datetime.fromisoformat(spec["time"].replace("Z", "+00:00")),
        "datacontenttype": "application/json",
        "channel": spec["channel"],
        "priority": spec["priority"],
    }
    return CloudEvent(attributes, spec["data"])


def post(url: str, token: str, headers: dict, body: bytes) -> tuple[int, str]:
    # http.client sends the SDK's headers as they are (urllib would add a form Content-Type).
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    try:
        sent = {name: str(value) for name, value in headers.items()}
        connection.request("POST", target.path or "/", body, sent | {"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def main() -> None:
    plan = json.load(sys.stdin)
    encoders = {"binary": to_binary_event, "structured": to_structured_event}
    for request in plan["requests"]:
        (spec,) = request["events"]
        message = encoders[request["mode"]](to_event(spec))
        status, text = post(plan["url"], plan["token"], dict(message.headers), message.body)
        print(json.dumps({"mode": request["mode"], "status": status, "body": text}), flush=True)


if __name__ == "__main__":
    main()
