"""A paced load driver: worker threads with a requests.Session each, sending the shop's events.

Open-loop pacing: the workers share one schedule of send times (`rate` per second), so a slow
answer does not lower the offered load as long as a worker is free; with all workers waiting
(e.g. for the gateway's Kafka timeout) the schedule slips, and slots older than a second are
dropped rather than sent in a burst later.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import requests

from .shop import BATCH_CONTENT_TYPE, ORDER, Event, Shop, TokenSource, batch_body
from .stats import Outcome

RETRYABLE = {0, 429, 502, 503, 504}


@dataclass(frozen=True)
class Mix:
    """Share of each kind of request (binary mode single events, or a checkout batch)."""

    pageview: float = 0.45
    order: float = 0.2
    payment: float = 0.15
    batch: float = 0.2


class LoadDriver:
    def __init__(
        self,
        target_url: str,
        tokens: TokenSource,
        shop: Shop,
        rate: float,
        workers: int = 16,
        timeout_s: float = 20.0,
        retries: int = 1,
        max_retry_wait_s: float = 5.0,
        mix: Mix | None = None,
        compose: Callable[[], list[Event]] | None = None,
    ) -> None:
        self.target_url = target_url.rstrip("/") + "/"
        self.tokens = tokens
        self.shop = shop
        self.workers = workers
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self.mix = mix or Mix()
        self.compose = compose  # when given, every request is the batch it returns (the mix is unused)
        self.outcomes: list[Outcome] = []
        self.sent: set[str] = set()
        self.accepted: set[str] = set()
        self.orders: dict[str, dict] = {}  # id -> data of every order event sent (Flink's bounds)
        self.missing_retry_after = 0  # 429/503 answers without the header
        self.reasons: Counter[tuple[int, str]] = Counter()  # (status, problem type) of non-202 answers
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rate = rate
        self._next_slot = 0.0

    # --- schedule -------------------------------------------------------------------------------

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate = rate
            self._next_slot = time.monotonic()

    def _take_slot(self) -> float | None:
        with self._lock:
            if self._rate <= 0:
                return None
            now = time.monotonic()
            if self._next_slot < now - 1.0:
                self._next_slot = now  # behind by more than a second: drop the missed slots
            slot = self._next_slot
            self._next_slot += 1.0 / self._rate
            return slot

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.tokens.token()  # fail now, with Keycloak's reason, rather than in every thread
        self._next_slot = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, args=(index,), name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + self.max_retry_wait_s + 5)

    # --- work -------------------------------------------------------------------------------------

    def _work(self, index: int) -> None:
        session = requests.Session()
        chooser = random.Random(index)
        last_order: Event | None = None
        while not self._stop.is_set():
            slot = self._take_slot()
            if slot is None:
                self._stop.wait(0.1)
                continue
            delay = slot - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self.compose is not None:
                self._send(session, self.compose())
                continue
            kind = chooser.choices(
                ("pageview", "order", "payment", "batch"),
                weights=(self.mix.pageview, self.mix.order, self.mix.payment, self.mix.batch),
            )[0]
            if kind == "pageview":
                events = [self.shop.pageview()]
            elif kind == "order" or (kind == "payment" and last_order is None):
                last_order = self.shop.order()
                events = [last_order]
            elif kind == "payment" and last_order is not None:
                events = [self.shop.payment(last_order)]
                last_order = None
            else:
                events = self.shop.checkout()
            self._send(session, events)

    def _send(self, session: requests.Session, events: list[Event]) -> None:
        if len(events) == 1:
            headers = events[0].binary_headers()
            body = events[0].body()
        else:
            headers = {"Content-Type": BATCH_CONTENT_TYPE}
            body = batch_body(events)
        ids = [event.id for event in events]
        with self._lock:
            self.sent.update(ids)
            self.orders.update((e.id, e.data) for e in events if e.type == ORDER)
        for attempt in range(1, self.retries + 2):
            try:
                headers.update(self.tokens.authorization())
            except Exception:
                # Keycloak down is not part of these scenarios; the request counts as unanswered.
                self._record(Outcome(time.time(), 0.0, 0, len(events), attempt), ids)
                return
            started_wall, started = time.time(), time.perf_counter()
            retry_after: float | None = None
            try:
                response = session.post(self.target_url, data=body, headers=headers, timeout=self.timeout_s)
                status = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if status != 202:
                    with self._lock:
                        self.reasons[(status, _problem_type(response))] += 1
                        if status in (429, 503) and retry_after is None:
                            self.missing_retry_after += 1
            except requests.RequestException as error:
                status = 0
                with self._lock:
                    self.reasons[(0, type(error).__name__)] += 1
                session.close()  # a broken keep-alive connection must not be reused
            latency = time.perf_counter() - started
            self._record(Outcome(started_wall, latency, status, len(events), attempt, retry_after), ids)
            if status not in RETRYABLE or attempt > self.retries or self._stop.is_set():
                return
            # A real client retries the same events (same ids) after Retry-After: downstream
            # de-duplication on (source, id) is exercised whenever a first attempt did land.
            if self._stop.wait(min(retry_after or 1.0, self.max_retry_wait_s)):
                return

    def _record(self, outcome: Outcome, ids: list[str]) -> None:
        with self._lock:
            self.outcomes.append(outcome)
            if outcome.status == 202:
                self.accepted.update(ids)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


def _problem_type(response: requests.Response) -> str:
    """The problem+json `type` slug (kafka-unavailable, rate-limited, ...), or the content type."""
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1] or "problem without type"
    except ValueError:
        return response.headers.get("Content-Type", "no body").split(";")[0]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: not sent by nginx or the gateway
