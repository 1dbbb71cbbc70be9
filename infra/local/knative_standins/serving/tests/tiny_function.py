"""A tiny function for the serving tests: counts what it serves, on the port in PORT.

GET/POST /work?sleep=S answers after S seconds with its pid and the concurrency it saw;
/readyz answers 200 once STARTUP_DELAY seconds have passed; /stats reports the largest number
of requests it ever had in flight, and how many it refused to answer: /drop closes the connection
without a byte of an answer, /cut after half of one. HEAD gets a GET's header lines, no body.
SIGTERM stops it the way gunicorn does: no new connections, in-flight requests finish, then exit.
FAIL=1 makes it exit at once with code 3.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

if os.environ.get("FAIL") == "1":
    print("tiny function: failing on purpose", flush=True)
    sys.exit(3)

time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
lock = threading.Lock()
state = {"in_flight": 0, "max_in_flight": 0, "served": 0, "unanswered": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 3  # an idle keep-alive connection does not hold up the shutdown for long

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if url.path == "/readyz":
            return self._answer(200, {"ready": True})
        if url.path == "/stats":
            with lock:
                return self._answer(200, {**state, "pid": os.getpid()})
        if url.path in ("/drop", "/cut"):
            with lock:
                state["unanswered"] += 1
            if url.path == "/cut":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            self.close_connection = True
            return None
        with lock:
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            seen = state["in_flight"]
        time.sleep(float(parse_qs(url.query).get("sleep", ["0"])[0]))
        with lock:
            state["in_flight"] -= 1
            state["served"] += 1
        self._answer(200, {"pid": os.getpid(), "concurrency": seen})

    do_GET = _handle
    do_POST = _handle

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "42")  # what a GET's body would be
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = False  # in-flight requests finish before the process exits
server.block_on_close = True


def stop(*_args) -> None:
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
server.server_close()  # joins the request threads: in-flight requests complete
print(f"tiny function: served {state['served']}, max in flight {state['max_in_flight']}", flush=True)
