"""What the Python SDK senders share: the plan on stdin, the POST, one JSON line per answer.

Each sender (send_sdk1.py, send_sdk2.py) turns one event of the plan into headers and a body with
its own SDK and hands that to `run`; the rest is here, standard library only. Run as a script, a
sender finds this module beside itself.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

Encode = Callable[[str, dict], tuple[dict, bytes]]


def attributes(spec: dict, **own: object) -> dict:
    """An event's attributes from the plan: envelope, time and the two extensions; `own` replaces
    or adds what an SDK wants in its own type (a datetime time, a datacontenttype)."""
    return {
        "id": spec["id"],
        "source": spec["source"],
        "type": spec["type"],
        "subject": spec["subject"],
        "time": spec["time"],
        "channel": spec["channel"],
        "priority": spec["priority"],
        **own,
    }


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


def run(encode: Encode) -> None:
    """Every request of the plan ({"url", "token", "requests": [{"mode", "events": [one]}]}), encoded
    by `encode(mode, event)`; prints {"mode", "status", "body"} for each."""
    plan = json.load(sys.stdin)
    for request in plan["requests"]:
        (spec,) = request["events"]
        headers, body = encode(request["mode"], spec)
        status, text = post(plan["url"], plan["token"], headers, body)
        print(json.dumps({"mode": request["mode"], "status": status, "body": text}), flush=True)
