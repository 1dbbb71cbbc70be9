"""Receives CloudEvents with the Python SDK 2.x (cloudevents==2.2.0) as a user's subscriber would.

The judge of ripple's HTTP senders: its binding (`cloudevents.core.bindings.http.from_http_event`)
percent-decodes binary-mode header values as the HTTP binding asks (3.1.3.2). The other SDKs of
the client tests cannot judge: sdk-go v2.16.2 and the JavaScript SDK 10.0.0 read header values as
they are (cloudevents/sdk-go#1331), and the 1.x Python SDK does too.

Listens on 127.0.0.1 (a free port), prints {"port": N} as its first line, then one JSON line per
request: {"status", "attributes", "data"} (time as ISO 8601; "error" when the SDK refused the
request, which is answered 400). Answers 202 otherwise; exits after --count requests.
Standard library only besides the SDK.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event


def describe(headers: dict[str, str], body: bytes) -> dict:
    try:
        event = from_http_event(HTTPMessage(headers=headers, body=body))
    except Exception as error:  # the SDK's own refusal is the outcome to report
        return {"status": 400, "error": f"{type(error).__name__}: {error}"}
    attributes = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
    }
    data = event.get_data()
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return {"status": 202, "attributes": attributes, "data": data}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Header values as the server read them (Latin-1 of the bytes); names lower-cased.
        outcome = describe({name.lower(): value for name, value in self.headers.items()}, body)
        print(json.dumps(outcome, ensure_ascii=False, default=str), flush=True)
        self.send_response(outcome["status"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True, help="requests to answer before exiting")
    arguments = parser.parse_args()
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    for _ in range(arguments.count):
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main()
