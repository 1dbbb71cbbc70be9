"""delivery.http1: framing, reuse, limits, timeouts and failures against a scripted loopback server;
`exchange`, HEAD and NotAnswered as the activator's proxy uses them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from knative_standins.delivery.http1 import ConnectionLost, Http1Client, InvalidResponse, NotAnswered

OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
# Each test runs on the stdlib loop and on uvloop (the dispatcher's), whose transports differ.
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
loop_factory = LOOPS["asyncio"]


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def on_loop(request: pytest.FixtureRequest):
    global loop_factory
    loop_factory = LOOPS[request.param]
    yield
    loop_factory = LOOPS["asyncio"]


@dataclass
class Seen:
    """One request the server read: which connection (0, 1, ...) it came on, head and body."""

    connection: int
    head: bytes
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b": ")
            if key.lower() == name.lower():
                return value
        return None


# The server's answer to a request: bytes to write (then keep reading), or a coroutine taking the
# writer that does something else (wait, close, ...); None closes without answering.
Answer = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]] | None


@dataclass
class Server:
    answer: Callable[[Seen], Answer]
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen = Seen(number, head, await reader.readexactly(length))
                self.requests.append(seen)
                answer = self.answer(seen)
                if answer is None:
                    return
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    await answer(writer)
                if writer.is_closing():
                    return
        finally:
            self.open_now -= 1
            writer.close()


def serve(answer: Callable[[Seen], Answer], scenario: Callable[[Server], Awaitable[None]]) -> Server:
    """Run the scenario against a fresh server on a loopback port; the server, for assertions."""

    async def main() -> Server:
        server = Server(answer)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        server.port = listener.sockets[0].getsockname()[1]
        async with listener:
            await scenario(server)
        return server

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_request_framing_status_body_and_reuse():
    answers = iter([b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", OK])
    results = []

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=4)
        url = f"http://127.0.0.1:{server.port}/path?q=1"
        results.append(await client.request(b"POST", url, b"ce-id: e-1\r\n", b'{"a": 1}'))
        results.append(await client.request(b"POST", url, b"", None))
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert results == [(500, b"oops"), (202, b"")]
    first, second = server.requests
    assert first.head.startswith(b"POST /path?q=1 HTTP/1.1\r\n")
    assert first.header(b"host") == f"127.0.0.1:{server.port}".encode()
    assert first.header(b"ce-id") == b"e-1" and first.body == b'{"a": 1}'
    assert first.header(b"content-length") == b"8"
    assert second.header(b"content-length") == b"0" and second.body == b""
    assert server.connections == 1, "the keep-alive connection is reused"


def test_chunked_interim_and_until_close_answers():
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")  # no length: ends with the connection
        await writer.drain()
        writer.close()

    answers = iter(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
            until_close,
        ]
    )
    results = []

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=4)
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(3):
            results.append(await client.request(b"POST", url, b"", b"x"))
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert results == [(200, b"abcde"), (404, b"no"), (200, b"until the end")]
    # The 404 said Connection: close, so the third request opened a new connection.
    assert [seen.connection for seen in server.requests] == [0, 0, 1]


def test_timeout_closes_the_connection_and_the_next_request_opens_another():
    async def never(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    answers = iter([never, OK])

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=0.2, max_connections=1)
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(TimeoutError):
            await client.request(b"POST", url, b"", b"x")
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert [seen.connection for seen in server.requests] == [0, 1]


def test_connection_lost_before_and_during_the_answer():
    async def half(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    answers = iter([None, half, OK])

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        url = f"http://127.0.0.1:{server.port}/"
        # Closed without a byte of an answer: NotAnswered (a proxy may send it elsewhere).
        with pytest.raises(NotAnswered):
            await client.request(b"POST", url, b"", b"x")
        # Cut off mid-answer: ConnectionLost, and not NotAnswered.
        with pytest.raises(ConnectionLost) as cut:
            await client.request(b"POST", url, b"", b"x")
        assert not isinstance(cut.value, NotAnswered)
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert [seen.connection for seen in server.requests] == [0, 1, 2]


def test_invalid_answer_and_refused_connection():
    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        with pytest.raises(InvalidResponse):
            await client.request(b"POST", f"http://127.0.0.1:{server.port}/", b"", b"x")
        with pytest.raises(OSError):
            await client.request(b"POST", "http://127.0.0.1:1/", b"", b"x")
        with pytest.raises(ValueError):
            await client.request(b"POST", "ftp://127.0.0.1/", b"", b"x")
        client.close()

    serve(lambda seen: b"NOT HTTP AT ALL\r\n\r\n", scenario)


def test_an_idle_connection_the_server_closed_is_not_reused():
    async def then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        writer.close()  # after a complete answer that did not say Connection: close

    answers = iter([then_close, OK])

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        await asyncio.sleep(0.1)  # the close reaches the client
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert server.connections == 2


def test_at_most_max_connections_per_origin_and_slots_come_back():
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        url = f"http://127.0.0.1:{server.port}/"
        results = await asyncio.gather(*(client.request(b"POST", url, b"", b"x") for _ in range(7)))
        assert results == [(202, b"")] * 7
        # A request cancelled while it waits for a connection gives nothing back that is not its.
        waiting = [asyncio.ensure_future(client.request(b"POST", url, b"", b"x")) for _ in range(4)]
        await asyncio.sleep(0.01)
        waiting[3].cancel()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        assert done[:3] == [(202, b"")] * 3 and isinstance(done[3], asyncio.CancelledError)
        pool = next(iter(client._pools.values()))
        assert pool.open == 2 and not pool.waiters and len(pool.idle) == 2
        client.close()

    server = serve(lambda seen: slow, scenario)
    assert server.most_open == 2 and server.connections == 2


def test_idle_connections_are_closed_after_keepalive():
    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2, keepalive_s=0.1)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        pool = next(iter(client._pools.values()))
        assert len(pool.idle) == 1
        for _ in range(50):  # the sweep runs keepalive_s after the connection went idle
            await asyncio.sleep(0.05)
            if not pool.idle:
                break
        assert not pool.idle and pool.open == 0
        assert await client.request(b"POST", url, b"", b"x") == (202, b"")
        client.close()

    server = serve(lambda seen: OK, scenario)
    assert server.connections == 2


def test_exchange_sends_the_target_as_given_and_returns_the_header_lines():
    answer = b"HTTP/1.1 201 Created\r\nX-One: 1\r\nContent-Length: 2\r\nx-two: 2\r\n\r\nok"
    results = []

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        deadline = client.loop.time() + 5
        for method, body in ((b"GET", b""), (b"DELETE", b"d"), (b"POST", b"")):
            results.append(
                await client.exchange(
                    method, "127.0.0.1", server.port, b"/a%20b?c=%2F", b"X-Asked: yes\r\n", body, deadline
                )
            )
        client.close()

    server = serve(lambda seen: answer, scenario)
    headers = [(b"X-One", b"1"), (b"Content-Length", b"2"), (b"x-two", b"2")]
    assert results == [(201, headers, b"ok")] * 3
    get, delete, post = server.requests
    assert get.head.startswith(b"GET /a%20b?c=%2F HTTP/1.1\r\n")
    assert get.header(b"host") == f"127.0.0.1:{server.port}".encode()
    assert get.header(b"x-asked") == b"yes"
    # No Content-Length on a bodiless GET (RFC 9110 8.6); one with a body, or for a POST.
    assert get.header(b"content-length") is None
    assert delete.header(b"content-length") == b"1" and delete.body == b"d"
    assert post.header(b"content-length") == b"0"
    assert server.connections == 1


def test_a_head_answer_has_no_body_and_its_connection_is_not_reused():
    # The Content-Length of a HEAD answer is the one a GET would get: no body bytes follow.
    head_answer = b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    answers = iter([head_answer, OK])
    results = []

    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=2, max_connections=2)
        deadline = client.loop.time() + 2
        for method in (b"HEAD", b"GET"):
            results.append(await client.exchange(method, "127.0.0.1", server.port, b"/", b"", b"", deadline))
        client.close()

    server = serve(lambda seen: next(answers), scenario)
    assert results == [(200, [(b"Content-Length", b"5")], b""), (202, [(b"Content-Length", b"0")], b"")]
    assert [seen.connection for seen in server.requests] == [0, 1]


def test_close_idle_keeps_the_origins_asked_for_and_forgets_the_others():
    async def scenario(server: Server) -> None:
        client = Http1Client(timeout_s=5, max_connections=2)
        deadline = client.loop.time() + 5
        for host in ("127.0.0.1", "localhost"):  # two origins on the one server
            assert (await client.exchange(b"GET", host, server.port, b"/", b"", b"", deadline))[0] == 202
        client.close_idle({("127.0.0.1", server.port)})
        kept = client._pools[("http", "127.0.0.1", server.port)]
        assert list(client._pools) == [("http", "127.0.0.1", server.port)] and len(kept.idle) == 1
        # The kept connection is reused; the forgotten origin opens a new pool and connection.
        for host in ("127.0.0.1", "localhost"):
            assert (await client.exchange(b"GET", host, server.port, b"/", b"", b"", deadline))[0] == 202
        client.close()
        assert not client._pools

    server = serve(lambda seen: OK, scenario)
    assert [seen.connection for seen in server.requests] == [0, 1, 0, 2]
