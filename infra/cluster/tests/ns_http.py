"""One HTTP request sent from inside the cluster's network namespace, with exact header bytes.

The Eventing tests must reach addresses that exist only inside the namespace (the Broker
ingress's ClusterIP, a Service's ClusterIP), and the network rule lets them send traffic only
there or to loopback. ``request()`` runs this file under ``nsenter --net`` with the standard
library only, and passes the request as JSON on stdin with every header name, value and the body
as base64, so non-ASCII attribute bytes go on the wire exactly as given (http.client writes bytes
values unchanged). The answer comes back the same way on stdout.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path
from typing import Any


def request(
    netns: str,
    url: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    method: str = "POST",
    timeout: float = 30,
) -> dict[str, Any]:
    """Send from the namespace; returns {"status", "headers": [(name, value bytes)], "body": bytes}."""
    spec = {
        "method": method,
        "url": url,
        "headers": [[base64.b64encode(n).decode(), base64.b64encode(v).decode()] for n, v in headers or []],
        "body": base64.b64encode(body).decode(),
        "timeout": timeout,
    }
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(spec),
        text=True,
        capture_output=True,
        timeout=timeout + 15,
    )
    if r.returncode != 0:
        raise RuntimeError(f"request to {url} from namespace {netns} failed: {r.stderr.strip()[-1500:]}")
    out = json.loads(r.stdout)
    return {
        "status": out["status"],
        "headers": [(base64.b64decode(n), base64.b64decode(v)) for n, v in out["headers"]],
        "body": base64.b64decode(out["body"]),
    }


def _main() -> None:
    spec = json.load(sys.stdin)
    url = urllib.parse.urlsplit(spec["url"])
    conn = HTTPConnection(url.hostname, url.port or 80, timeout=spec["timeout"])
    conn.putrequest(spec["method"], url.path or "/", skip_accept_encoding=True)
    body = base64.b64decode(spec["body"])
    for name, value in spec["headers"]:
        conn.putheader(base64.b64decode(name).decode("ascii"), base64.b64decode(value))
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in resp.getheaders()]
    json.dump(
        {
            "status": resp.status,
            "headers": [[base64.b64encode(n).decode(), base64.b64encode(v).decode()] for n, v in raw],
            "body": base64.b64encode(data).decode(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    _main()
