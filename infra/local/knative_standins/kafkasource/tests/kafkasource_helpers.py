"""Helpers of the KafkaSource dispatcher tests: a programmable HTTP sink, test topics, a
dispatcher process on its own manifest, and polling with a generous deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from loadtest.dispatcher.bench import kafkasource_manifest
from loadtest.measure import free_port
from ripple_events.samples import ORDER_PLACED, cloud_event
from ripple_stack.components.functions import standin_addresses
from ripple_stack.settings import REPO_ROOT, load_settings


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    """Poll until the condition holds; a generous deadline, never an assertion on speed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting after {timeout_s:.0f}s for: {what}")


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def ce(self) -> dict[str, str]:
        return {k[3:].lower(): v for k, v in self.headers.items() if k.lower().startswith("ce-")}


@dataclass
class Sink:
    """An HTTP sink run by the test; `respond(delivery, attempt)` gives (status, body)."""

    respond: Callable[[Delivery, int], tuple[int, bytes]] = lambda d, n: (202, b"")
    received: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests the sink was answering at once

    def attempts(self, event_id: str) -> int:
        with self.lock:
            return sum(1 for d in self.received if d.ce.get("id") == event_id)

    def ids(self) -> list[str]:
        with self.lock:
            return [d.ce.get("id", "") for d in self.received]


@contextmanager
def running_sink(sink: Sink) -> Iterator[Sink]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            delivery = Delivery({k.lower(): v for k, v in self.headers.items()}, body)
            with sink.lock:
                sink.received.append(delivery)
                attempt = sum(1 for d in sink.received if d.ce.get("id") == delivery.ce.get("id"))
                sink.in_flight += 1
                sink.most_in_flight = max(sink.most_in_flight, sink.in_flight)
            try:
                status, answer = sink.respond(delivery, attempt)
            finally:
                with sink.lock:
                    sink.in_flight -= 1
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def temporary_topic(bootstrap: str, partitions: int = 3) -> Iterator[str]:
    name = f"ripple.test.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ripple-test")
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
        yield name
    finally:
        try:
            admin.delete_topics([name])
        finally:
            admin.close()


def write_manifest(
    directory: Path,
    topic: str,
    sink_uri: str,
    *,
    dead_letter_uri: str | None = None,
    ordering: str = "ordered",
    extra_topics: tuple[str, ...] = (),
    initial_offset: str = "earliest",
    retry: int = 3,
    backoff_policy: str = "linear",
    backoff_delay: str = "PT0.05S",
    timeout: str = "PT5S",
) -> Path:
    name = f"test-{uuid.uuid4().hex[:8]}"
    delivery: dict = {
        "retry": retry,
        "backoffPolicy": backoff_policy,
        "backoffDelay": backoff_delay,
        "timeout": timeout,
    }
    if dead_letter_uri:
        delivery["deadLetterSink"] = {"uri": dead_letter_uri}
    return kafkasource_manifest(
        directory,
        name,
        [topic, *extra_topics],
        sink_uri,
        delivery,
        group=f"ripple-test-{uuid.uuid4().hex[:10]}",
        ordering=ordering,
        initial_offset=initial_offset,
    )


@contextmanager
def dispatching(manifest: Path, log: Path, max_in_flight: int | None = None) -> Iterator[DispatcherProcess]:
    """A dispatcher process on the manifest for the with-block (RIPPLE_DISPATCHER_MAX_IN_FLIGHT if
    given), stopped afterwards however the block ends."""
    env = {"RIPPLE_DISPATCHER_MAX_IN_FLIGHT": str(max_in_flight)} if max_in_flight else None
    dispatcher = DispatcherProcess(manifest, log, env=env).start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


class DispatcherProcess:
    """`python -m knative_standins.kafkasource <manifest>` started by the test."""

    def __init__(self, manifest: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.manifest, self.log = manifest, log
        self.metrics_port = free_port()
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> DispatcherProcess:
        # Where the manifests' cluster addresses and Services are, as the stack runner tells it.
        addresses = standin_addresses(load_settings()).to_env()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "knative_standins.kafkasource",
                    str(self.manifest),
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **addresses, **(self.env or {})},
            )
        return self

    def wait_until_positioned(self, partitions: int) -> None:
        """Wait until the consumer has joined and found its start offset in every partition.

        With initialOffset latest, only what is written after this is delivered: the tests that
        share the stack's topics use it to skip the backlog other tests leave there.
        """
        wait_until(
            lambda: (
                self.log.read_text(errors="replace").count("Resetting offset for partition") >= partitions
            ),
            f"the dispatcher positioned on {partitions} partitions",
        )

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()


def produce(bootstrap: str, topic: str, events: list[CloudEvent]) -> None:
    """Write events in the CloudEvents Kafka binding, binary mode (as the gateway does)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for event in events:
            message = to_binary(event)
            key = message.key.encode() if isinstance(message.key, str) else message.key
            producer.send(topic, key=key, value=message.value, headers=list(message.headers.items()))
        producer.flush(60)
    finally:
        producer.close()


def order_event(source: str, event_id: str, key: str, data: dict | None = None) -> CloudEvent:
    data = data or {"orderId": key, "amount": 1.0}
    return cloud_event(ORDER_PLACED, data, source, id=event_id, partitionkey=f"acme/{key}", subject=key)
