"""The activator's data path: a lean HTTP/1.1 proxy on asyncio protocols and httptools' C parser.

Every request to a function crosses its activator, so this hop must cost little CPU. aiohttp's
server plus its pooled client spent ~185-265 µs of Python per proxied request (request and
response objects, header multidicts, stream readers, tasks and timers for each side; flame graph
in loadtest/serving/profiles/). Here the framing is all that is parsed: method, path, headers,
Content-Length or chunked body and keep-alive come from httptools (the parser uvicorn uses), the
body is buffered as bytes, and the request goes to the chosen instance as one buffer on a pooled
keep-alive connection of the delivery package's client (delivery/http1.py, which the KafkaSource
dispatcher sends with: the same framing, one client), whose response is written back as one buffer.
Headers stay bytes; hop-by-hop ones are dropped both ways.

What is policy (slots, holding at zero, timeouts, metrics) stays in activator.py: this module
calls its `handler(request, connection)` coroutine once per request, in order per connection.
"""

from __future__ import annotations

import asyncio
import http
import json
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones written anew: Host and framing (by the client).
REQUEST_SKIP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        # Answered by the proxy itself; the body is complete when it is forwarded.
        b"expect",
    }
)
RESPONSE_SKIP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length"})
RESPONSE_SKIP_HEAD = RESPONSE_SKIP - {b"content-length"}  # a HEAD answer's length describes a GET
STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
STATUS_LINES[499] = b"HTTP/1.1 499 Client Closed Request\r\n"
# Requests parsed ahead of the one being answered on a connection (pipelining) before reading pauses.
MAX_PIPELINED = 16
SWEEP_INTERVAL_S = 0.5

Headers = list[tuple[bytes, bytes]]
Response = tuple[int, Headers, bytes]


class Request:
    """One complete request from a client connection."""

    __slots__ = ("body", "error", "headers", "keep_alive", "method", "path")

    def __init__(self, method: bytes, path: bytes, headers: Headers, body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.error: Response | None = None  # answered by the proxy itself, then the connection closes


def problem(status: int, title: str, detail: str, retry_after: int | None = None) -> Response:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers: Headers = [(b"Content-Type", b"application/problem+json")]
    if retry_after is not None:
        headers.append((b"Retry-After", str(retry_after).encode()))
    return status, headers, body


def encode_response(status: int, headers: Headers, body: bytes, keep_alive: bool, head: bool) -> bytes:
    parts = [STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status]
    if status in (204, 304):  # never a body, nor a length (RFC 9110 8.6)
        head = True
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    if not head:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


def forwarded_head(request: Request) -> bytes:
    """The request's header lines for the instance: end-to-end ones only (the client writes Host
    and Content-Length)."""
    return b"".join(
        [
            name + b": " + value + b"\r\n"
            for name, value in request.headers
            if name.lower() not in REQUEST_SKIP
        ]
    )


class ClientConnection(asyncio.Protocol):
    """One connection from a client (nginx, a dispatcher, a test): parse, queue, answer in order."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.pending: deque[Request] = deque()
        self.busy = False
        self.paused = False
        self.broken = False  # a framing error was queued: ignore whatever follows
        self.last_active = 0.0
        self._url: list[bytes] = []
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._size = 0
        self._error: Response | None = None

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last_active = self.server.loop.time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        self.last_active = self.server.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # RFC 9110 7.8: a server may ignore Upgrade. The request was queued as a plain one;
            # the parser stops here, so its answer closes the connection.
            self.broken = True
            if self.pending:
                self.pending[-1].keep_alive = False
        except httptools.HttpParserError as error:
            if self._error is not None:
                self._fail(self._error)
            else:
                self._fail(problem(400, "Bad Request", f"the request is not valid HTTP/1.1 ({error})."))

    # --- httptools callbacks ---
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size, self._error = [], [], [], 0, None

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        expect = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                if value.isdigit() and int(value) > self.server.max_body:
                    self._too_large()
            elif lower == b"expect" and value.lower() == b"100-continue":
                expect = True
        if expect and self._error is None and self.transport is not None:
            # The client waits for this before it sends the body.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.server.max_body:
            self._too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = Request(
            self.parser.get_method(),
            b"".join(self._url),
            self._headers,
            b"".join(self._body),
            self.parser.should_keep_alive(),
        )
        self.pending.append(request)
        if len(self.pending) >= MAX_PIPELINED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        if not self.busy:
            self.busy = True
            self.server.loop.create_task(self._serve())

    # --- answering ---
    def _too_large(self) -> None:
        detail = f"the activator forwards at most {self.server.max_body} bytes."
        self._error = problem(413, "Content Too Large", detail)
        raise httptools.HttpParserError("too large")  # stops the parser; data_received answers

    def _fail(self, response: Response) -> None:
        """Answer with `response` after the requests already queued, then close."""
        self.broken = True
        request = Request(b"GET", b"", [], b"", False)
        request.error = response
        self.pending.append(request)
        if not self.busy:
            self.busy = True
            self.server.loop.create_task(self._serve())

    async def _serve(self) -> None:
        server = self.server
        try:
            while self.pending and not self.closed:
                request = self.pending.popleft()
                if self.paused and len(self.pending) < MAX_PIPELINED // 2 and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                if request.error is not None:
                    status, headers, body = request.error
                    self.transport.write(encode_response(status, headers, body, False, False))  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
                    return
                status, headers, body = await server.handler(request, self)
                if self.closed:
                    return
                keep = request.keep_alive and not server.closing
                head = request.method == b"HEAD"
                self.transport.write(encode_response(status, headers, body, keep, head))  # type: ignore[union-attr]
                self.last_active = server.loop.time()
                if not keep:
                    self.transport.close()  # type: ignore[union-attr]
                    return
        finally:
            self.busy = False


class ProxyServer:
    """The listening side: client connections, their idle timeout, and a clean close."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: Callable[[Request, ClientConnection], Awaitable[Response]],
        max_body: int,
        keepalive_s: float,
    ) -> None:
        self.loop = loop
        self.handler = handler
        self.max_body = max_body
        self.keepalive_s = keepalive_s
        self.connections: set[ClientConnection] = set()
        self.closing = False

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def sweep(self) -> None:
        cutoff = self.loop.time() - self.keepalive_s
        for connection in [c for c in self.connections if not c.busy and c.last_active < cutoff]:
            connection.transport.close()  # type: ignore[union-attr]

    def close_idle(self) -> None:
        """At shutdown, once nothing is in flight: close every connection."""
        self.closing = True
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
