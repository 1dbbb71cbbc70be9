"""A trivial HTTP sink for the dispatcher benchmark: a private nginx answering every POST with 202.

The same sink `make bench-peers` gives Knative's dispatcher, so the dispatcher's own cost is what
is measured. It runs from a scratch directory on a free port, one worker, no access log, and is
stopped (by its own pid) when the context exits.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest.measure import free_port

CONFIG = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 202; }}
    }}
}}
"""


@contextmanager
def trivial_sink() -> Iterator[str]:
    """The URL of an nginx that answers 202 to everything, for as long as the context lasts."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("bench: nginx is needed for the trivial sink; run `make up` (it installs nginx).")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ripple-bench-sink-") as scratch:
        root = Path(scratch)
        config = root / "nginx.conf"
        config.write_text(CONFIG.format(root=root, port=port))
        process = subprocess.Popen(
            [binary, "-p", str(root), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(
                            f"bench: the trivial sink did not start: {(root / 'error.log').read_text()}"
                        ) from None
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
