"""The Broker's ingress: CloudEvents over HTTP in, 202 only once RabbitMQ confirmed the publish.

As eventing-rabbitmq's cmd/ingress: POST / only (405 otherwise, 404 for another path); binary or
structured mode; the event goes to the Broker's durable headers exchange as a persistent message
(message.py) on a channel in publisher-confirm mode, and the answer is 202 after RabbitMQ's
basic.ack. Upstream answers a bare 400/500; ripple answers application/problem+json with a
reason: 400 for what is not a valid CloudEvent, 503 (with Retry-After) when RabbitMQ cannot be
reached or did not confirm, so a sender retries. A RabbitMQ that is down refuses the connection
at once, so the 503 is fast; the next request tries again.

Threads: one per HTTP connection (ThreadingHTTPServer). pika's BlockingConnection is not
thread-safe, so each publish borrows a connection of its own from a small pool.
GET /metrics (Prometheus) and GET /healthz share the port (upstream has them elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pika.exceptions
from cloudevents import exceptions as ce_exceptions
from cloudevents.http import CloudEvent, from_http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ripple_cloudevents import InvalidAttribute, decode_headers

from ..metrics import Metrics
from .manifest import Broker
from .message import to_message
from .topology import declare_broker, exchange_name

log = logging.getLogger("ripple.broker.ingress")
PROBLEM_BASE = "https://ripple.dev/problems/"
MAX_BODY_BYTES = 1024 * 1024
# Failures of RabbitMQ itself (connection, channel, confirm) rather than of the request.
AMQP_FAILURES = (pika.exceptions.AMQPError, OSError)


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        metrics = Metrics(("broker",), registry)
        self.received = metrics.counter("ripple_broker_ingress_events", "Valid events received")
        self.confirmed = metrics.counter(
            "ripple_broker_ingress_confirmed", "Events RabbitMQ confirmed (answered 202)"
        )
        self.refused = metrics.counter(
            "ripple_broker_ingress_refused", "Requests answered with an error", ("broker", "reason")
        )
        self.latency = metrics.histogram(
            "ripple_broker_ingress_publish_seconds",
            "From publish to RabbitMQ's confirm",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )


class Publisher:
    """One AMQP connection with a confirm-mode channel; used by one thread at a time."""

    def __init__(self, parameters: pika.ConnectionParameters, broker: Broker) -> None:
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        declare_broker(self.channel, broker)
        self.exchange = exchange_name(broker)

    def publish(self, event: CloudEvent) -> None:
        """Return once RabbitMQ confirmed the message; raise an AMQP error otherwise."""
        properties, body = to_message(event)
        # mandatory=False, as upstream: an event no Trigger matches is confirmed and dropped.
        self.channel.basic_publish(self.exchange, "", body, properties)

    def close(self) -> None:
        with contextlib.suppress(AMQP_FAILURES):
            self.connection.close()


class Ingress:
    def __init__(
        self, broker: Broker, amqp_url: str, registry: CollectorRegistry, pool_size: int = 16
    ) -> None:
        self.broker = broker
        self.parameters = pika.URLParameters(amqp_url)
        # Fail fast: one attempt, short socket timeouts; the HTTP sender retries on 503.
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = 2
        self.parameters.blocked_connection_timeout = 5
        self.parameters.heartbeat = 0  # idle pooled connections are checked when used
        self.pool: queue.LifoQueue[Publisher] = queue.LifoQueue(maxsize=pool_size)
        self.metrics = IngressMetrics(registry)
        self.registry = registry

    def _borrow(self) -> Publisher:
        try:
            return self.pool.get_nowait()
        except queue.Empty:
            return Publisher(self.parameters, self.broker)

    def _give_back(self, publisher: Publisher) -> None:
        try:
            self.pool.put_nowait(publisher)
        except queue.Full:
            publisher.close()

    def publish(self, event: CloudEvent) -> None:
        """Publish with confirm; a pooled connection that went stale gets one fresh retry."""
        publisher = self._borrow()
        try:
            publisher.publish(event)
        except AMQP_FAILURES:
            publisher.close()
            # The pooled connection may predate a RabbitMQ restart: drop every pooled one.
            while not self.pool.empty():
                self.pool.get_nowait().close()
            publisher = Publisher(self.parameters, self.broker)
            try:
                publisher.publish(event)
            except AMQP_FAILURES:
                publisher.close()
                raise
        self._give_back(publisher)


def problem(status: int, slug: str, title: str, detail: str) -> tuple[int, bytes]:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    return status, json.dumps(body).encode()


def handler_for(ingress: Ingress) -> type[BaseHTTPRequestHandler]:
    broker = ingress.broker.name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ripple-broker-ingress"

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the log; metrics count them

        def _send(
            self, status: int, body: bytes = b"", content_type: str = "application/problem+json"
        ) -> None:
            self.send_response(status)
            if body:
                self.send_header("Content-Type", content_type)
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _refuse(self, reason: str, status: int, title: str, detail: str) -> None:
            ingress.metrics.refused.labels(broker, reason).inc()
            self._send(*problem(status, reason, title, detail))

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(ingress.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
            else:
                self._refuse("not-found", 404, "Not found", "the Broker ingress accepts POST / only")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._refuse("too-large", 413, "Event too large", f"the body exceeds {MAX_BODY_BYTES} bytes")
                return
            body = self.rfile.read(length) if length else b""
            if self.path != "/":
                self._refuse("not-found", 404, "Not found", "post events to / of the Broker ingress")
                return
            try:
                # Binary mode: the ce-* values percent-decoded (HTTP binding 3.1.3.2); raw UTF-8, which
                # upstream's sdk-go senders write, is taken as it is; a control character is a 400.
                headers = decode_headers(self.headers.items(), raw_utf8=True)
                event = from_http(headers, body, data_unmarshaller=lambda data: data)
            except InvalidAttribute as error:
                self._refuse("invalid-cloudevent", 400, "Not a valid CloudEvent", str(error))
                return
            except (ce_exceptions.GenericException, ValueError, TypeError, UnicodeDecodeError) as error:
                self._refuse(
                    "invalid-cloudevent", 400, "Not a valid CloudEvent", str(error) or type(error).__name__
                )
                return
            # The SDK stamps a time on events that have none; the Broker passes them unchanged.
            had_time = "ce-time" in {k.lower() for k in self.headers} or b'"time"' in body
            if not had_time and "time" in event:
                del event["time"]
            ingress.metrics.received.labels(broker).inc()
            try:
                with ingress.metrics.latency.labels(broker).time():
                    ingress.publish(event)
            except AMQP_FAILURES as error:
                log.warning("publish to RabbitMQ failed: %r", error)
                self._refuse(
                    "broker-unavailable",
                    503,
                    "Broker unavailable",
                    f"RabbitMQ did not confirm the event ({type(error).__name__}); retry later",
                )
                return
            ingress.metrics.confirmed.labels(broker).inc()
            self._send(202)

        def _unsupported(self) -> None:
            self._refuse(
                "method-not-allowed", 405, "Method not allowed", "the Broker ingress accepts POST / only"
            )

        do_PUT = do_DELETE = do_PATCH = _unsupported

    return Handler


def serve(
    ingress: Ingress, host: str, port: int, ready: threading.Event | None = None
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler_for(ingress))
    server.daemon_threads = True
    if ready is not None:
        ready.set()
    return server
