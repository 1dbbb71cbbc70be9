"""A small pooled keep-alive HTTP/1.1 client on asyncio protocols and httptools' C parser.

Both dispatchers (KafkaSource and Trigger) POST every event with it (sender.py). aiohttp's
ClientSession spent ~30 % of the KafkaSource dispatcher's CPU building request and response
objects, header multidicts, stream readers and timers for each request
(loadtest/dispatcher/profiles/README.md); here a request is one buffer written on an idle
connection of its origin's pool, the response is framed by httptools (Content-Length, chunked, or
until the server closes) and its body kept as bytes. The activator (serving/activator.py)
forwards requests to its function's instances with it too (`exchange`: the request target as
received, the answer's header lines, a deadline of its own).

What it does, all a dispatcher needs: one request at a time per connection (no pipelining),
http and https, at most `max_connections` connections per origin (further requests wait for one
to be free, as aiohttp's `limit_per_host`), idle connections closed after `keepalive_s`, and one
total timeout per request covering the wait for a connection, the connect, the send and the whole
answer. A connection is reused only after a complete answer that allows it (`should_keep_alive`);
one that broke, timed out or was cancelled is closed. A request is never sent twice: a connection
the server closed under it (even an idle one it had just taken) fails the request with
ConnectionLost, and retrying is the caller's choice (for a POST, aiohttp decides the same):
NotAnswered, the ConnectionLost raised when not one byte of an answer came, tells a proxy the
request may go to another server, while a cut-off answer may not. The answer to a HEAD has no body
(RFC 9110 9.3.2): it is complete with its header lines, and that connection is not reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Container
from urllib.parse import quote, urlsplit

import httptools

# Routes remembered per URL; a dispatcher has two (sink, dead-letter sink), the cap is a safeguard.
MAX_ROUTES = 256
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
# Characters left as they are in a request target's path (RFC 3986 pchar and "/"; "%" keeps what
# is already percent-encoded).
TARGET_SAFE = "/%:@!$&'()*+,;=-._~"
# Methods whose request carries no Content-Length when it has no body (RFC 9110 8.6).
UNSIZED_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})

Headers = list[tuple[bytes, bytes]]


class HttpClientError(Exception):
    """The request got no complete, valid answer (besides OSError and TimeoutError)."""


class ConnectionLost(HttpClientError):
    """The server closed the connection before its answer was complete."""


class NotAnswered(ConnectionLost):
    """The connection closed (or could not take the request) before any byte of an answer came:
    a server going away (an idle connection it closed, a process exiting) that did not answer."""


class InvalidResponse(HttpClientError):
    """The answer is not valid HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection of a pool; one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = False  # in the pool's count of open connections (from opened to dropped)
        self.waiter: asyncio.Future | None = None
        self.idle_since = 0.0
        self.no_body = False  # the request is a HEAD: its answer ends with the header lines
        # The answer being read: the parser and what its callbacks fill.
        self.parser = httptools.HttpResponseParser(self)
        self._answering = False  # a byte of the answer came: a close now cuts it off
        self._status = 0
        self._framed = False  # Content-Length or chunked: complete without the server closing
        self._headers_done = False
        self._headers: Headers = []
        self._body: list[bytes] = []

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.drop(self)
        if self._headers_done and not self._framed:  # a body that runs until the close: complete
            self._finish((self._status, self._headers, b"".join(self._body), False))
        elif self._answering:
            self._finish(ConnectionLost("the server closed the connection before answering in full"))
        else:
            self._finish(NotAnswered("the server closed the connection without answering"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: an idle connection must stay silent
            self.close()
            return
        self._answering = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._finish(InvalidResponse(f"the answer is not valid HTTP/1.1 ({error})"))
            self.close()

    # --- httptools callbacks ---
    def on_message_begin(self) -> None:
        self._headers, self._body, self._framed, self._headers_done = [], [], False, False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if name.lower() in FRAMING_HEADERS:
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = status = self.parser.get_status_code()
        self._headers_done = True
        if self.no_body and status >= 200:
            # The parser cannot know that a HEAD answer's Content-Length describes no body here:
            # complete now, and not reusable (the parser would take the next answer as that body).
            self._finish((status, self._headers, b"", False))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self._headers_done = False
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._finish((status, self._headers, b"".join(self._body), self.parser.should_keep_alive()))

    # --- the client's side ---
    def _finish(self, result: tuple[int, Headers, bytes, bool] | Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if isinstance(result, Exception):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def send(self, data: bytes, no_body: bool) -> asyncio.Future:
        """Write one request; the future's result is (status, headers, body, keep_alive)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():  # nothing was sent
            raise NotAnswered("the server closed the connection before the request was sent")
        self.waiter = waiter = self.pool.loop.create_future()
        self.no_body = no_body
        self._answering = False
        try:
            transport.write(data)
        except RuntimeError as error:  # uvloop: the handle closed under us
            self.close()
            raise NotAnswered("the connection closed while the request was written") from error
        return waiter

    def timed_out(self) -> None:
        self._finish(TimeoutError("no complete answer in time"))
        self.close()

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections to one origin (scheme, host, port): idle ones newest first, a bounded count."""

    def __init__(self, client: Http1Client, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.loop = client.loop
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.authority = b"%s:%d" % (host.encode("ascii"), port)  # the Host header of `exchange`
        self.limit = client.max_connections
        self.keepalive_s = client.keepalive_s
        self.idle: list[_Connection] = []
        self.open = 0  # connections open or being opened
        self.waiters: deque[asyncio.Future] = deque()  # requests waiting for a connection
        self._sweep_handle: asyncio.TimerHandle | None = None

    def take_idle(self) -> _Connection | None:
        """The newest idle connection still fresh, or None (stale ones are closed on the way)."""
        idle = self.idle
        if not idle:
            return None
        cutoff = self.loop.time() - self.keepalive_s
        while idle:
            connection = idle.pop()
            if connection.idle_since > cutoff and not (connection.closed or connection.closing()):
                return connection
            connection.close()
            self.drop(connection)
        return None

    async def acquire(self) -> _Connection:
        while True:
            connection = self.take_idle()
            if connection is not None:
                return connection
            if self.open < self.limit:
                self.open += 1
                try:
                    _, protocol = await self.loop.create_connection(
                        lambda: _Connection(self),
                        self.host,
                        self.port,
                        ssl=self.ssl_context,
                        server_hostname=self.host if self.ssl_context else None,
                    )
                except BaseException:
                    self.open -= 1
                    self._wake(None)
                    raise
                protocol.counted = True  # the reserved slot is the connection's now
                if protocol.closed:  # closed by the server before we could use it
                    self.drop(protocol)
                    raise NotAnswered("the server closed the connection as it was opened")
                return protocol  # type: ignore[return-value]
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result(), True)  # handed over as we were cancelled
                else:
                    self._forget_waiter(waiter)
                raise
            if handed is not None:
                return handed
            # None: a slot was freed; take it (or an idle connection) on the next turn

    def _forget_waiter(self, waiter: asyncio.Future) -> None:
        with contextlib.suppress(ValueError):  # already taken off by _wake
            self.waiters.remove(waiter)

    def _wake(self, connection: _Connection | None) -> bool:
        """Hand a connection (or, None, a free slot) to the first waiting request; False if none."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def release(self, connection: _Connection, keep_alive: bool) -> None:
        """A request is done with the connection: keep it for the next one, or close it."""
        connection.waiter = None
        if not keep_alive or connection.closed:
            connection.close()
            self.drop(connection)
            return
        if self.waiters and self._wake(connection):
            return
        connection.idle_since = self.loop.time()
        self.idle.append(connection)
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self.keepalive_s, self._sweep)

    def drop(self, connection: _Connection) -> None:
        """The connection is closed (or closing): it no longer counts, and its slot is free."""
        if not connection.counted:
            return
        connection.counted = False
        self.open -= 1
        with contextlib.suppress(ValueError):  # not idle: it was in use
            self.idle.remove(connection)
        self._wake(None)

    def _sweep(self) -> None:
        """Close the connections idle for longer than keepalive_s; look again while any is idle."""
        self._sweep_handle = None
        cutoff = self.loop.time() - self.keepalive_s
        for connection in [c for c in self.idle if c.idle_since <= cutoff]:
            connection.close()
            self.drop(connection)
        if self.idle:
            self._sweep_handle = self.loop.call_later(self.keepalive_s, self._sweep)

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for connection in list(self.idle):
            connection.close()
            self.drop(connection)


class Http1Client:
    """Pooled keep-alive HTTP/1.1 requests, on the running loop.

    `request` (a URL) returns (status, body) and `exchange` (an origin and a request target)
    (status, headers, body) for any complete answer, whatever its status; both raise TimeoutError
    (no complete answer in time), OSError (cannot connect: refused, unreachable, unknown host) or
    HttpClientError (ConnectionLost, of which NotAnswered; InvalidResponse).
    """

    def __init__(self, timeout_s: float, max_connections: int, keepalive_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.loop = asyncio.get_running_loop()
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._routes: dict[str, tuple[_Pool, bytes, bytes]] = {}
        self._ssl_context: ssl.SSLContext | None = None

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        """The pool of an origin, made on first use."""
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            context = None
            if scheme == "https":
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
                context = self._ssl_context
            pool = self._pools[key] = _Pool(self, host, port, context)
        return pool

    def _route(self, url: str) -> tuple[_Pool, bytes, bytes]:
        """The pool, request target and Host header of a URL (parsed once per URL)."""
        route = self._routes.get(url)
        if route is not None:
            return route
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        pool = self._pool(parts.scheme, parts.hostname, port)
        target = quote(parts.path or "/", safe=TARGET_SAFE) + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        route = self._routes[url] = (pool, target.encode("ascii"), host.encode("ascii"))
        return route

    async def request(self, method: bytes, url: str, head: bytes, body: bytes | None) -> tuple[int, bytes]:
        """Send `method url` with the header lines `head` (each ending in CRLF; not Host nor
        Content-Length, which are added) and `body` within `timeout_s`; the answer's status and body."""
        pool, target, host = self._route(url)
        deadline = self.loop.time() + self.timeout_s
        status, _, answer_body = await self._exchange(pool, method, target, host, head, body, deadline)
        return status, answer_body

    async def exchange(
        self, method: bytes, host: str, port: int, target: bytes, head: bytes, body: bytes, deadline: float
    ) -> tuple[int, Headers, bytes]:
        """What a proxy needs: send `method target` as received (already percent-encoded) to
        http://host:port with Host `host:port`, the header lines `head` (as for `request`) and
        `body`, for a complete answer by `deadline` (the loop's clock); its status, header lines
        (all of them, as received) and body."""
        pool = self._pool("http", host, port)
        return await self._exchange(pool, method, target, pool.authority, head, body, deadline)

    async def _exchange(
        self,
        pool: _Pool,
        method: bytes,
        target: bytes,
        host: bytes,
        head: bytes,
        body: bytes | None,
        deadline: float,
    ) -> tuple[int, Headers, bytes]:
        connection = pool.take_idle()
        if connection is None:
            async with asyncio.timeout_at(deadline):
                connection = await pool.acquire()
        if body or method not in UNSIZED_METHODS:
            body = body or b""
            data = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
                method,
                target,
                host,
                len(body),
                head,
                body,
            )
        else:
            data = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, target, host, head)
        try:
            answer = connection.send(data, method == b"HEAD")
        except BaseException:
            pool.release(connection, False)
            raise
        timer = self.loop.call_at(deadline, connection.timed_out)
        try:
            status, headers, answer_body, keep_alive = await answer
        except BaseException:  # timed out, broken, invalid, or the caller cancelled: not reusable
            pool.release(connection, False)
            raise
        finally:
            timer.cancel()
        pool.release(connection, keep_alive)
        return status, headers, answer_body

    def close_idle(self, keep: Container[tuple[str, int]] = ()) -> None:
        """Close the idle connections to every origin whose (host, port) is not in `keep`, and
        forget such an origin once none of its connections is open: a proxy whose servers come
        and go (the activator's instances) closes what a stopping server would wait for, and keeps
        no pool for a port that is gone."""
        for key, pool in list(self._pools.items()):
            if (pool.host, pool.port) in keep:
                continue
            pool.close()
            if pool.open == 0 and not pool.waiters:
                del self._pools[key]
                self._routes.clear()  # some may lead to the forgotten pool

    def close(self) -> None:
        """Close every idle connection (those in use close when their request ends)."""
        self.close_idle()
