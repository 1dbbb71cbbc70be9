"""The activator's HTTP/1.1 framing (proxy.py, delivery/http1.py toward the instance) with a real
activator and the tiny function.

One activator (min-scale 1) for the module; raw sockets where the client must do something
urllib does not (chunked bodies, Expect: 100-continue, pipelining, garbage, HTTP/1.0).
"""

from __future__ import annotations

import json
import re
import socket

import pytest
from serving_helpers import activator


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with activator(tmp_path_factory.mktemp("proxy"), {"min-scale": "1"}) as running:
        running.wait_for(lambda s: s["instances_ready"] == 1, "the min-scale instance")
        yield running


def exchange(running, data: bytes, wait_close: bool = True) -> bytes:
    """Send raw bytes, read until the activator closes the connection (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", running.spec.port), timeout=5) as client:
        client.sendall(data)
        received = b""
        try:
            while chunk := client.recv(65536):
                received += chunk
        except TimeoutError:
            assert not wait_close, f"the activator kept the connection open after {received!r}"
        return received


def answers(raw: bytes) -> list[tuple[int, dict, bytes]]:
    """Split a stream of Content-Length framed answers."""
    result = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0)) if status >= 200 else 0
        result.append((status, headers, rest[:length]))
        raw = rest[length:]
    return result


def test_pipelined_requests_are_answered_in_order_and_keep_alive_is_honoured(running) -> None:
    raw = exchange(
        running,
        b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = answers(raw)
    assert [status for status, _, _ in got] == [200, 200, 200]
    assert "served" in json.loads(got[2][2])
    assert got[2][1]["connection"] == "close"


def test_a_chunked_body_and_expect_100_continue_reach_the_instance(running) -> None:
    raw = exchange(
        running,
        b"POST /work HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    got = answers(raw)
    assert [status for status, _, _ in got] == [100, 200]
    assert json.loads(got[1][2])["concurrency"] >= 1


def test_http_1_0_gets_its_answer_and_the_connection_closes(running) -> None:
    got = answers(exchange(running, b"GET /work HTTP/1.0\r\n\r\n"))
    assert [status for status, _, _ in got] == [200]


def test_an_upgrade_is_ignored_the_request_answered_and_the_connection_closed(running) -> None:
    upgrade = b"GET /work HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    got = answers(exchange(running, upgrade))
    assert [status for status, _, _ in got] == [200]
    assert got[0][1]["connection"] == "close"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nx", 413),
    ],
)
def test_what_cannot_be_forwarded_gets_problem_json_and_a_closed_connection(
    running, request_bytes: bytes, status: int
) -> None:
    got = answers(exchange(running, request_bytes))
    assert [s for s, _, _ in got] == [status]
    assert got[0][1]["content-type"] == "application/problem+json"
    assert json.loads(got[0][2])["status"] == status


def ok_count(metrics: str) -> float:
    found = re.search(r'^activator_request_count\{[^}]*response_code="200"[^}]*\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_requests_are_counted_for_the_decider_and_metrics(running) -> None:
    before = ok_count(running.metrics())
    for _ in range(3):
        assert running.request("/work")[0] == 200
    metrics = running.metrics()
    assert ok_count(metrics) == before + 3
    assert "activator_request_concurrency" in metrics
    assert running.status()["in_flight"] == 0


def test_a_head_answer_keeps_its_length_has_no_body_and_the_connection_stays_open(running) -> None:
    raw = exchange(
        running,
        b"HEAD /work HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nContent-Length: 42" in head
    # No body after the HEAD answer: the next bytes are the GET's answer on the same connection.
    assert [status for status, _, _ in answers(rest)] == [200]


def unanswered(running) -> int:
    return json.loads(answers(exchange(running, b"GET /stats HTTP/1.0\r\n\r\n"))[0][2])["unanswered"]


def test_an_instance_that_closes_without_answering_is_tried_again_a_cut_answer_is_not(running) -> None:
    before = unanswered(running)
    (dropped,) = answers(exchange(running, b"GET /drop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert dropped[0] == 503 and "closed the connection three times" in json.loads(dropped[2])["detail"]
    assert unanswered(running) == before + 3  # not processed, so sent again: three attempts
    (cut,) = answers(exchange(running, b"GET /cut HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert cut[0] == 502 and cut[1]["content-type"] == "application/problem+json"
    assert unanswered(running) == before + 4  # an answer had begun: never sent twice
