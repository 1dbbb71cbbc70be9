"""Sends CloudEvents to the ripple gateway with the Python SDK 1.x API (cloudevents==1.12.0).

Binary and structured mode with the SDK's own encoders, exactly as a user would call them: the
event carries no datacontenttype, so the binary request has no Content-Type (the JSON data is
implied application/json). The 1.x SDK has no batch writer: no batch requests.

Reads a plan on stdin ({"url", "token", "requests": [{"mode", "events": [...]}]}) and prints one
JSON line per request: {"mode", "status", "body"}. Standard library only besides the SDK.
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent


def to_event(spec: dict) -> CloudEvent:
    attributes = {
        "id": spec["id"],
        "source": spec["source"],
        "type": spec["type"],
        "subject": spec["subject"],
        "time": spec["time"],
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
    encoders = {"binary": to_binary, "structured": to_structured}
    for request in plan["requests"]:
        (spec,) = request["events"]
        headers, body = encoders[request["mode"]](to_event(spec))
        status, text = post(plan["url"], plan["token"], headers, body)
        print(json.dumps({"mode": request["mode"], "status": status, "body": text}), flush=True)


if __name__ == "__main__":
    main()
