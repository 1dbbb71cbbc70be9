"""POST CloudEvents in HTTP binary mode over pooled keep-alive connections (delivery/http1.py).

One client per dispatcher: it keeps up to `max_connections` connections to each sink alive (idle
30 s) and reuses them; requests and answers are framed by httptools' C parser. It replaced an
aiohttp ClientSession, whose per-request objects were ~30 % of the dispatcher's CPU, as aiohttp had
replaced `requests` on a thread pool (loadtest/dispatcher/profiles/README.md).

What goes out: `POST`, `Host`, `Content-Length`, the event's `ce-*` and `content-type` headers
(values already encoded by convert.py), `Prefer: reply` and `Kn-Namespace` as Knative's dispatcher
sends them, and the body. No `Accept`, `Accept-Encoding` or `User-Agent` (aiohttp added its
own; no sink reads them): answers therefore come uncompressed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery.http1 import Http1Client, HttpClientError
from .convert import HttpEvent


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None  # None: no response (timeout, connection refused, ...)
    body: bytes | None
    error: str = ""


class HttpSender:
    def __init__(self, timeout_s: float, namespace: str, max_connections: int) -> None:
        self.timeout_s = timeout_s
        # As Knative's dispatcher sends them, after the event's own headers.
        self.extra_headers = {"Prefer": "reply", "Kn-Namespace": namespace}
        self._extra = "".join(f"{name}: {value}\r\n" for name, value in self.extra_headers.items())
        self._extra_lines = len(self.extra_headers)
        self.max_connections = max_connections
        self._client: Http1Client | None = None

    async def __aenter__(self) -> HttpSender:
        self._client = Http1Client(self.timeout_s, self.max_connections, keepalive_s=30.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()

    def head(self, event: HttpEvent) -> bytes:
        """The header lines of an event's request (without Host and Content-Length).

        ValueError for a name or value with a CR or LF, which would split the request (aiohttp
        refused them the same way); only a record's own content-type could carry one.
        """
        text = "".join([f"{name}: {value}\r\n" for name, value in event.headers.items()]) + self._extra
        lines = len(event.headers) + self._extra_lines
        if text.count("\n") != lines or text.count("\r") != lines:
            raise ValueError("a header name or value holds a CR or LF")
        return text.encode()

    async def post(self, url: str, event: HttpEvent) -> Response:
        assert self._client is not None, "use the sender as `async with`"
        head = self.head(event)  # ce-* values are encoded (convert.py)
        try:
            status, body = await self._client.request(b"POST", url, head, event.body)
        except (TimeoutError, HttpClientError, OSError) as error:
            return Response(None, None, f"{type(error).__name__}: {error}")
        return Response(status, body)
