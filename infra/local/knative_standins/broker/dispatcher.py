"""One Trigger's dispatcher: its queue -> its subscriber, acknowledged only after a 2xx.

As eventing-rabbitmq's pkg/dispatcher: the Trigger's queue is consumed with manual acks and a
prefetch of `parallelism` (the rabbitmq.eventing.knative.dev/parallelism annotation), each
message is delivered (at most `parallelism` at a time) as a binary-mode CloudEvent, retried per
the delivery spec (which failures are retried and how long to wait: the delivery package's
policy, the KafkaSource stand-in's rules), and then:
- 2xx: the message is acked;
- failed for good, with a dead-letter sink: the event, with knativeerrordest, knativeerrorcode and
  knativeerrordata, is published to the Trigger's dead-letter exchange (confirmed), then acked.
  The dead-letter queue is consumed by this same process and delivered to the dead-letter sink;
- failed for good, without one: acked and counted as discarded (upstream drops it too).
Anything not acked when RabbitMQ or this process goes away is redelivered by RabbitMQ: at least
once, never lost (subscribers are idempotent on source+id).

Deviations (README.md): upstream acks a dead letter even when its publish to the DLX failed and
acks a dead-letter-queue message even when the dead-letter sink failed; ripple requeues both
instead of losing them. Reply events from the subscriber are not sent back to the Broker.

Threads: the main thread owns the pika connection (not thread-safe): it consumes, acks and
publishes. The deliveries run as tasks of one event loop on a thread of their own (uvloop when
installed), over the delivery package's pooled keep-alive HTTP/1.1 sender (delivery/sender.py, the
KafkaSource dispatcher's): prefetch bounds them to `parallelism` per queue, as `parallelism`
worker threads posting with `requests` did until the profile showed that thread pool and
`requests` were most of the dispatcher's CPU (loadtest/broker/profiles/README.md). A task hands its
outcome back with add_callback_threadsafe. The metrics server has its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import cloudevents.exceptions
import pika
import pika.exceptions
from cloudevents.http import CloudEvent
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from ..delivery.errors import with_error_extensions
from ..delivery.loop import new_event_loop
from ..delivery.policy import backoff_s, dead_letter_backoff_s, is_retryable, is_success
from ..delivery.sender import HttpSender, Response
from .manifest import Notifications, Trigger
from .message import NotACloudEvent, from_message, to_binary_request_of, to_message
from .metrics import DispatcherMetrics
from .topology import dead_letter_exchange_name, dead_letter_queue_name, declare_trigger, queue_name

log = logging.getLogger("ripple.broker.dispatcher")
AMQP_FAILURES = (pika.exceptions.AMQPError, OSError)
# A message no attempt can deliver: no CloudEvent attributes, or ones the SDK refuses (an unknown
# specversion, an attribute named like its own fields). Acked and counted as discarded: left
# unsettled, it would hold one of the queue's prefetch slots until the next reconnect.
UNDELIVERABLE = (NotACloudEvent, cloudevents.exceptions.GenericException)
DEPTH_INTERVAL_S = 2.0


class TriggerDispatcher:
    def __init__(
        self,
        notifications: Notifications,
        trigger: Trigger,
        amqp_url: str,
        subscriber_url: str,
        dead_letter_url: str | None,
        metrics: DispatcherMetrics,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.broker = notifications.broker
        self.trigger = trigger
        self.delivery = notifications.delivery_of(trigger)
        self.parameters = pika.URLParameters(amqp_url)
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = 5
        self.subscriber_url = subscriber_url
        self.dead_letter_url = dead_letter_url
        self.metrics = metrics
        self.sleep = sleep
        self.parallelism = trigger.parallelism
        # Main queue and dead-letter queue each have `parallelism` messages in flight at most
        # (their prefetch): as many connections as the 2 * parallelism worker threads had.
        self.sender = HttpSender(self.delivery.timeout_s, 2 * self.parallelism)
        self.loop: asyncio.AbstractEventLoop | None = None  # the deliveries' (start_deliveries)
        self._loop_thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self.in_flight = 0  # of the current session's connection (_counted)
        self._counted: BlockingConnection | None = None
        self._lock = threading.Lock()
        self.stop = threading.Event()

    # The hot series, looked up once (on first use, so that they appear when they did before).
    @functools.cached_property
    def _delivered(self) -> Any:
        return self.metrics.delivered.labels(self.trigger.name)

    @functools.cached_property
    def _latency(self) -> Any:
        return self.metrics.latency.labels(self.trigger.name)

    # --- delivery (tasks of the deliveries' event loop) -------------------------------------

    async def _post(self, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        try:
            return await self.sender.post(url, headers, body)
        except ValueError as error:  # a header with a line break: a failed attempt, as with requests
            return Response(None, None, f"ValueError: {error}")

    async def deliver(self, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        """Deliver an event's request with the delivery spec's retries; the last answer."""
        response = await self._post(url, headers, body)
        retries = 0
        while (
            not is_success(response.status or 0)
            and is_retryable(response.status)
            and retries < self.delivery.retry
        ):
            retries += 1
            self.metrics.retried.labels(self.trigger.name).inc()
            await self.sleep(backoff_s(self.delivery, retries))
            response = await self._post(url, headers, body)
        return response

    async def _work(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        publisher: BlockingChannel,
        tag: int,
        headers: dict | None,
        body: bytes,
    ) -> None:
        started = time.monotonic()
        try:
            request_headers, request_body = to_binary_request_of(headers, body)
        except UNDELIVERABLE as error:
            log.warning("dropping a message that is not a CloudEvent: %s", error)
            self.metrics.discarded.labels(self.trigger.name, "not-a-cloudevent").inc()
            self._hand_back(connection, functools.partial(channel.basic_ack, tag))
            return
        response = await self.deliver(self.subscriber_url, request_headers, request_body)
        self._latency.observe(time.monotonic() - started)
        if is_success(response.status or 0):
            self._delivered.inc()
            self._hand_back(connection, functools.partial(channel.basic_ack, tag))
            return
        log.warning(
            "delivery to %s failed for good (status %s) %s",
            self.subscriber_url,
            response.status,
            response.error,
        )
        if self.dead_letter_url is None:
            self.metrics.discarded.labels(self.trigger.name, "no-dead-letter-sink").inc()
            self._hand_back(connection, functools.partial(channel.basic_ack, tag))
            return
        event = from_message(headers, body)
        dead = with_error_extensions(event, self.subscriber_url, response.status, response.body)
        self._hand_back(connection, functools.partial(self._dead_letter, channel, publisher, tag, dead))

    async def _work_dead_letter(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        headers: dict | None,
        body: bytes,
    ) -> None:
        try:
            request_headers, request_body = to_binary_request_of(headers, body)
        except UNDELIVERABLE:
            self._hand_back(connection, functools.partial(channel.basic_ack, tag))
            return
        response = await self.deliver(self.dead_letter_url or "", request_headers, request_body)
        if is_success(response.status or 0):
            self.metrics.dead_lettered.labels(self.trigger.name).inc()
            self._hand_back(connection, functools.partial(channel.basic_ack, tag))
            return
        self.metrics.dead_letter_failures.labels(self.trigger.name).inc()
        # Kept, not dropped: wait, then give it back to the dead-letter queue for another try.
        await self.sleep(dead_letter_backoff_s(self.delivery, 1))
        self._hand_back(connection, functools.partial(channel.basic_nack, tag, requeue=True))

    def _start(self, work: Callable[..., Coroutine[Any, Any, None]], arguments: tuple) -> None:
        """On the loop: one delivery as a task, referenced until it is done."""
        assert self.loop is not None
        task = self.loop.create_task(work(*arguments))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # unsettled: RabbitMQ redelivers
            log.error("a delivery failed unexpectedly", exc_info=task.exception())

    def start_deliveries(self) -> None:
        """Run the deliveries' event loop on a thread of its own, the sender open on it."""
        loop = self.loop = new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.sender.__aenter__())
            ready.set()
            loop.run_forever()

        self._loop_thread = threading.Thread(target=serve, name="deliver", daemon=True)
        self._loop_thread.start()
        ready.wait()

    def stop_deliveries(self, timeout_s: float = 5.0) -> None:
        """Cancel the deliveries still running (their messages, unsettled, are RabbitMQ's again
        once the connection is closed), close the sender's connections and stop the loop."""
        loop, thread = self.loop, self._loop_thread
        if loop is None or thread is None:
            return

        async def finish() -> None:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.sender.__aexit__(None, None, None)

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()
        self.loop = self._loop_thread = None

    def _hand_back(self, connection: BlockingConnection, action: Callable[[], None]) -> None:
        def run() -> None:
            try:
                action()
            except AMQP_FAILURES as error:  # the connection is gone: RabbitMQ redelivers
                log.warning("could not settle a message: %r", error)
            finally:
                self._settled(connection)

        try:
            connection.add_callback_threadsafe(run)
        except AMQP_FAILURES:
            self._settled(connection)

    def _settled(self, connection: BlockingConnection) -> None:
        """One message of `connection` is done. A lost session's count was dropped with it: a
        callback queued on a connection that then closed never runs, and must not leave the
        count (ripple_trigger_in_flight) stuck above zero."""
        with self._lock:
            if connection is self._counted:
                self.in_flight -= 1

    # --- the connection's thread ----------------------------------------------------------

    def _dead_letter(
        self, channel: BlockingChannel, publisher: BlockingChannel, tag: int, event: CloudEvent
    ) -> None:
        properties, body = to_message(event)
        try:
            publisher.basic_publish(dead_letter_exchange_name(self.trigger), "", body, properties)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            channel.basic_nack(tag, requeue=True)
            return
        channel.basic_ack(tag)

    def _submit(self, work: Callable[..., Coroutine[Any, Any, None]], *arguments: object) -> None:
        with self._lock:
            self.in_flight += 1
        assert self.loop is not None, "start_deliveries first"
        self.loop.call_soon_threadsafe(self._start, work, arguments)

    def _session(self) -> None:
        connection = pika.BlockingConnection(self.parameters)
        with self._lock:  # the previous session's unsettled messages are RabbitMQ's again
            self._counted, self.in_flight = connection, 0
        try:
            channel = connection.channel()
            declare_trigger(channel, self.broker, self.trigger)
            publisher = connection.channel()
            publisher.confirm_delivery()
            channel.basic_qos(prefetch_count=self.parallelism)
            channel.basic_consume(
                queue_name(self.trigger),
                lambda ch, method, props, body: self._submit(
                    self._work, connection, ch, publisher, method.delivery_tag, props.headers, body
                ),
            )
            dead_channel = connection.channel()
            if self.dead_letter_url is not None:
                dead_channel.basic_qos(prefetch_count=self.parallelism)
                dead_channel.basic_consume(
                    dead_letter_queue_name(self.trigger),
                    lambda ch, method, props, body: self._submit(
                        self._work_dead_letter, connection, ch, method.delivery_tag, props.headers, body
                    ),
                )
            log.info(
                "consuming %s -> %s (parallelism %d)",
                queue_name(self.trigger),
                self.subscriber_url,
                self.parallelism,
            )
            self.metrics.connected.labels(self.trigger.name).set(1)
            next_depth = 0.0
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
                if time.monotonic() >= next_depth:
                    next_depth = time.monotonic() + DEPTH_INTERVAL_S
                    for name in (queue_name(self.trigger), dead_letter_queue_name(self.trigger)):
                        depth = dead_channel.queue_declare(name, passive=True).method.message_count
                        self.metrics.depth.labels(self.trigger.name, name).set(depth)
                self.metrics.in_flight.labels(self.trigger.name).set(self.in_flight)
            # Stopping: take no more, let in-flight deliveries finish and settle (bounded).
            channel.stop_consuming()
            dead_channel.stop_consuming()
            deadline = time.monotonic() + 15
            while self.in_flight > 0 and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.2)
        finally:
            self.metrics.connected.labels(self.trigger.name).set(0)
            with contextlib.suppress(AMQP_FAILURES):
                connection.close()

    def run(self) -> None:
        """Consume until stop is set; reconnect (once a second) whenever RabbitMQ goes away."""
        self.start_deliveries()
        while not self.stop.is_set():
            try:
                self._session()
            except AMQP_FAILURES as error:
                self.metrics.reconnects.labels(self.trigger.name).inc()
                log.warning("RabbitMQ connection lost or refused (%r); retrying", error)
                # Deliveries of the lost session cannot settle (their hand-back fails and only
                # counts down): RabbitMQ redelivers them to the next session.
                self.stop.wait(1.0)
        self.stop_deliveries()
