"""POST CloudEvents in HTTP binary mode over pooled keep-alive connections (aiohttp).

One aiohttp session per dispatcher: its connector keeps up to `max_connections` connections to
each sink alive and reuses them, and its C HTTP parser answers in a fraction of what `requests`
on a thread pool cost (the profile in loadtest/dispatcher/profiles/ shows the difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from .convert import HttpEvent


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None  # None: no response (timeout, connection refused, ...)
    body: bytes | None
    error: str = ""


def header_value(value: str) -> str:
    """The value with control characters (CR, LF, ...) percent-encoded, so HTTP can carry it.

    The CloudEvents HTTP binding (1.0.2, 3.1.3.2) says to percent-encode them; sent raw they
    would be refused by the HTTP client on every attempt, and the record would block its
    partition for good. Every other value goes out unchanged.
    """
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else quote(c, safe="") for c in value)


class HttpSender:
    def __init__(self, timeout_s: float, namespace: str, max_connections: int) -> None:
        self.timeout_s = timeout_s
        # As Knative's dispatcher sends them.
        self.extra_headers = {"Prefer": "reply", "Kn-Namespace": namespace}
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSender:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.max_connections, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            # Only the event's own content-type (as the SDK + requests sent it), no default one.
            skip_auto_headers=("Content-Type",),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, event: HttpEvent) -> Response:
        assert self._session is not None, "use the sender as `async with`"
        headers = {**event.headers, **self.extra_headers}
        for name, value in event.headers.items():
            if not value.isprintable():
                headers[name] = header_value(value)
        try:
            async with self._session.post(url, data=event.body, headers=headers) as response:
                return Response(response.status, await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return Response(None, None, f"{type(error).__name__}: {error}")
