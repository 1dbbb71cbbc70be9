"""A tiny function for the serving tests: counts what it serves, on the port in PORT.

GET/POST /work?sleep=S answers after S seconds with its pid and the concurrency it saw;
/readyz answers 200 once STARTUP_DELAY seconds have passed; /stats reports the largest number
of requests it ever had in flight. SIGTERM stops it the way gunicorn does: no new connections,
in-flight requests finish, then exit. FAIL=1 makes it exit at once with code 3.
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
state = {"in_flight": 0, "max_in_flight": 0, "served": 0}


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


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = False  # in-flight requests finish before the process exits
server.block_on_close = True


def stop(*_args) -> None:
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
server.server_close()  # joins the request threads: in-flight requests complete
print(f"tiny function: served {state['served']}, max in flight {state['max_in_flight']}", flush=True)
