"""POST CloudEvents in HTTP binary mode over pooled keep-alive connections (http1.py): the one
sender of both dispatchers, as upstream's data planes share one (issue 20).

One sender per dispatcher, used on its event loop: it keeps up to `max_connections` connections
to each sink alive (idle 30 s) and reuses them; requests and answers are framed by httptools' C
parser. In the KafkaSource dispatcher it replaced an aiohttp ClientSession, whose per-request
objects were ~30 % of the dispatcher's CPU, as aiohttp had replaced `requests` on a thread pool
(loadtest/dispatcher/profiles/README.md); in the Trigger dispatcher it replaced `requests` on a
thread pool (loadtest/broker/profiles/README.md).

What goes out: `POST`, `Host`, `Content-Length`, the event's `ce-*` and `content-type` headers as
given (values already percent-encoded by the caller), the dispatcher's `extra_headers` (the
KafkaSource's `Prefer: reply` and `Kn-Namespace`, as Knative's dispatcher sends them), and the
body. No `Accept`, `Accept-Encoding` or `User-Agent` (aiohttp and requests added their own; no sink
reads them): answers therefore come uncompressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .http1 import Http1Client, HttpClientError


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None  # None: no response (timeout, connection refused, ...)
    body: bytes | None
    error: str = ""


class HttpSender:
    def __init__(
        self, timeout_s: float, max_connections: int, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.extra_headers = dict(extra_headers or {})  # sent after the event's own headers
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

    def head(self, headers: Mapping[str, str]) -> bytes:
        """The header lines of an event's request (without Host and Content-Length).

        ValueError for a name or value with a CR or LF, which would split the request (aiohttp
        and requests refused them the same way); only an event's own content-type could carry one.
        """
        text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()]) + self._extra
        lines = len(headers) + self._extra_lines
        if text.count("\n") != lines or text.count("\r") != lines:
            raise ValueError("a header name or value holds a CR or LF")
        return text.encode()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        """POST the event (its binary-mode headers, values encoded, and body) to url: any complete
        answer's status and body, or no status (and why) when there was none."""
        assert self._client is not None, "use the sender as `async with`"
        head = self.head(headers)
        try:
            status, answer = await self._client.request(b"POST", url, head, body)
        except (TimeoutError, HttpClientError, OSError) as error:
            return Response(None, None, f"{type(error).__name__}: {error}")
        return Response(status, answer)
