"""POST CloudEvents in HTTP binary mode over pooled keep-alive connections (aiohttp).

One aiohttp session per dispatcher: its connector keeps up to `max_connections` connections to
each sink alive and reuses them, and its C HTTP parser answers in a fraction of what `requests`
on a thread pool cost (the profile in loadtest/dispatcher/profiles/ shows the difference).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from .convert import HttpEvent


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None  # None: no response (timeout, connection refused, ...)
    body: bytes | None
    error: str = ""


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
        headers = {**event.headers, **self.extra_headers}  # ce-* values are encoded (convert.py)
        try:
            async with self._session.post(url, data=event.body, headers=headers) as response:
                return Response(response.status, await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return Response(None, None, f"{type(error).__name__}: {error}")
