"""delivery.sender and kafkasource.deliver: what goes on the wire and how answers and failures come back.

A loopback server answers with a scripted list; the Deliverer runs over the real sender, so the
retry classification, dead letters and the `knativeerror*` headers are checked end to end.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from knative_standins.delivery.sender import HttpSender, Response
from knative_standins.delivery.spec import Delivery
from knative_standins.kafkasource.convert import HttpEvent
from knative_standins.kafkasource.deliver import Deliverer
from knative_standins.kafkasource.metrics import DispatcherMetrics

EVENT = HttpEvent(
    {
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-source": "/shop",
        "ce-type": "dev.ripple.shop.order.placed",
        "ce-note": "caf%C3%A9",
        "content-type": "application/json",
    },
    b'{"orderId": "o-1"}',
)
# What the KafkaSource dispatcher adds, as Knative's dispatcher sends them.
KNATIVE_HEADERS = {"Prefer": "reply", "Kn-Namespace": "ripple"}


def answer(status: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


def on_server(
    answers: list[bytes | None], scenario: Callable[[str], Awaitable[object]]
) -> tuple[object, list[tuple[dict[str, str], bytes]]]:
    """Run scenario(url) on uvloop (the dispatcher's loop) against a server giving `answers` in
    turn (None: close without answering; b"": never answer); its result and the requests
    (headers, body) received."""
    received: list[tuple[dict[str, str], bytes]] = []
    script = iter(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if line)
                headers["request-line"] = lines[0]
                received.append((headers, await reader.readexactly(int(headers["Content-Length"]))))
                reply = next(script)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def main() -> object:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            return await scenario(f"http://127.0.0.1:{port}/")

    return uvloop.run(main()), received


def test_post_sends_the_event_in_binary_mode_with_knatives_headers():
    async def scenario(url: str) -> list[Response]:
        async with HttpSender(5, 4, KNATIVE_HEADERS) as sender:
            return [
                await sender.post(url, EVENT.headers, EVENT.body),
                await sender.post(url, EVENT.headers, None),
            ]

    results, received = on_server([answer(202), answer(503, b"busy")], scenario)
    assert results == [Response(202, b""), Response(503, b"busy")]
    (headers, body), (_, no_body) = received
    assert headers["request-line"] == "POST / HTTP/1.1"
    assert {name: headers[name] for name in EVENT.headers} == EVENT.headers
    assert headers["Prefer"] == "reply" and headers["Kn-Namespace"] == "ripple"
    assert headers["Content-Length"] == str(len(EVENT.body or b"")) and body == EVENT.body
    assert no_body == b""
    assert "Accept-Encoding" not in headers and "Content-Type" not in headers  # only the event's


def test_failures_without_an_answer_are_a_response_without_status():
    async def scenario(url: str) -> list[Response]:
        async with HttpSender(5, 4, KNATIVE_HEADERS) as sender:
            lost = await sender.post(url, EVENT.headers, EVENT.body)
            refused = await sender.post("http://127.0.0.1:1/", EVENT.headers, EVENT.body)
        async with HttpSender(0.2, 4, KNATIVE_HEADERS) as sender:
            timed_out = await sender.post(url, EVENT.headers, EVENT.body)
        return [lost, refused, timed_out]

    (lost, refused, timed_out), _ = on_server([None, b""], scenario)
    # Closed before a byte of an answer: NotAnswered, the ConnectionLost that says so (delivery/http1.py).
    assert (lost.status, lost.body) == (None, None) and lost.error.startswith("NotAnswered")
    assert (refused.status, refused.body) == (None, None) and "ConnectionRefused" in refused.error
    assert (timed_out.status, timed_out.body) == (None, None) and timed_out.error.startswith("TimeoutError")


def test_a_header_with_a_line_break_is_refused():
    sender = HttpSender(5, 1, KNATIVE_HEADERS)
    with pytest.raises(ValueError):
        sender.head({**EVENT.headers, "content-type": "text/plain\r\nX-Injected: 1"})
    assert sender.head(EVENT.headers).endswith(b"Prefer: reply\r\nKn-Namespace: ripple\r\n")


def deliver(
    answers: list[bytes | None], retry: int, dead_letter: bool
) -> tuple[bool, list, DispatcherMetrics]:
    metrics = DispatcherMetrics(CollectorRegistry())

    async def scenario(url: str) -> bool:
        delivery = Delivery(retry=retry, backoff_delay_s=0.001)
        async with HttpSender(5, 4, KNATIVE_HEADERS) as sender:
            deliverer = Deliverer(
                sender,
                url + "sink",
                url + "dead" if dead_letter else None,
                delivery,
                metrics,
                "source",
                asyncio.Event(),
            )
            return await deliverer.deliver(EVENT, "orders", "orders-0@0")

    done, received = on_server(answers, scenario)
    return done, received, metrics


def count(metrics: DispatcherMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"kafkasource": "source", "topic": "orders"})
    return value or 0.0


def test_retryable_failures_are_retried_until_delivered():
    done, received, metrics = deliver([answer(503), None, answer(429), answer(202)], 3, True)
    assert done and len(received) == 4
    assert count(metrics, "ripple_dispatcher_events_retried_total") == 3
    assert count(metrics, "ripple_dispatcher_events_delivered_total") == 1


def test_a_final_failure_goes_to_the_dead_letter_sink_with_knatives_error_headers():
    done, received, metrics = deliver([answer(400, b"bad order"), answer(202)], 5, True)
    assert done and len(received) == 2  # 400 is not retried
    (sink, _), (dead, body) = received
    assert sink["request-line"] == "POST /sink HTTP/1.1" and dead["request-line"] == "POST /dead HTTP/1.1"
    assert dead["ce-knativeerrorcode"] == "400" and body == EVENT.body
    assert base64.b64decode(dead["ce-knativeerrordata"]) == b"bad order"
    assert dead["ce-knativeerrordest"].endswith("/sink")
    assert count(metrics, "ripple_dispatcher_events_dead_lettered_total") == 1


def test_no_answer_after_the_retries_is_dead_lettered_without_a_code():
    done, received, metrics = deliver([None, None, answer(202)], 1, True)
    assert done and len(received) == 3
    dead, _ = received[2]
    assert "ce-knativeerrorcode" not in dead and "ce-knativeerrordest" in dead
    done, received, metrics = deliver([answer(500)], 0, False)
    assert done and count(metrics, "ripple_dispatcher_events_discarded_total") == 1
