"""Deliver one event to its sink, Knative-style: retries with backoff, then the dead-letter sink.

The rules are delivery.py's (which statuses are retried, how long each wait is); this module
applies them to one event and reports the outcome to the metrics. A dead-letter sink that is down
is retried until it answers (the partition waits rather than dropping the event), and a stop
request ends any wait: the event is then left undone, its offset uncommitted, and a restarted
dispatcher delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..delivery.policy import backoff_s, dead_letter_backoff_s, is_retryable, is_success
from ..delivery.sender import HttpSender
from .convert import HttpEvent, with_error_headers
from .manifest import Delivery
from .metrics import DispatcherMetrics

log = logging.getLogger("ripple.kafkasource")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until the event is set or the time is up; True if it was set."""
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


class Deliverer:
    def __init__(
        self,
        sender: HttpSender,
        sink_url: str,
        dead_letter_url: str | None,
        delivery: Delivery,
        metrics: DispatcherMetrics,
        source_name: str,
        stopping: asyncio.Event,
    ) -> None:
        self.sender = sender
        self.sink_url = sink_url
        self.dead_letter_url = dead_letter_url
        self.delivery = delivery
        self.metrics = metrics
        self.source_name = source_name
        self.stopping = stopping
        self._by_topic: dict[str, tuple[Any, Any]] = {}

    def _hot_metrics(self, topic: str) -> tuple[Any, Any]:
        """The delivered counter and latency histogram of a topic, looked up once, not per event.

        The other series are created on first use only, so a dispatcher that never dead-lettered
        exposes no dead-letter series at all (as before).
        """
        children = self._by_topic.get(topic)
        if children is None:
            labels = (self.source_name, topic)
            children = self._by_topic[topic] = (
                self.metrics.delivered.labels(*labels),
                self.metrics.latency.labels(*labels),
            )
        return children

    async def _wait(self, seconds: float) -> bool:
        """Sleep, unless asked to stop first; True if asked to stop."""
        return await wait_event(self.stopping, seconds)

    async def deliver(self, event: HttpEvent, topic: str, where: str) -> bool:
        """Deliver one event; True once acknowledged or dead-lettered, False if stopped first.

        `where` names the record (topic-partition@offset) in the log.
        """
        labels = (self.source_name, topic)
        started = time.monotonic()
        retries = 0
        while True:
            response = await self.sender.post(self.sink_url, event.headers, event.body)
            if response.status is not None and is_success(response.status):
                delivered, latency = self._hot_metrics(topic)
                delivered.inc()
                latency.observe(time.monotonic() - started)
                return True
            if not is_retryable(response.status) or retries >= self.delivery.retry:
                break
            retries += 1
            self.metrics.retried.labels(*labels).inc()
            log.info(
                "retry %d/%d of %s/%s (%s) to %s after %s",
                retries,
                self.delivery.retry,
                event.source,
                event.id,
                where,
                self.sink_url,
                response.status or response.error,
            )
            if await self._wait(backoff_s(self.delivery, retries)):
                return False
        log.warning(
            "delivery of %s/%s (%s) failed: %s",
            event.source,
            event.id,
            where,
            response.status or response.error,
        )
        if self.dead_letter_url is None:
            self.metrics.discarded.labels(*labels).inc()
            return True
        dead = with_error_headers(event, self.sink_url, response.status, response.body)
        attempt = 0
        while True:
            answer = await self.sender.post(self.dead_letter_url, dead.headers, dead.body)
            if answer.status is not None and is_success(answer.status):
                self.metrics.dead_lettered.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(time.monotonic() - started)
                return True
            attempt += 1
            self.metrics.dead_letter_failures.labels(*labels).inc()
            log.error(
                "dead-letter sink %s refused %s/%s (attempt %d: %s); the partition waits",
                self.dead_letter_url,
                event.source,
                event.id,
                attempt,
                answer.status or answer.error,
            )
            if await self._wait(dead_letter_backoff_s(self.delivery, attempt)):
                return False
