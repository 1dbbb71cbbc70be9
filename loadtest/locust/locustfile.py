"""Locust load generator: shoppers browsing, ordering and paying through ripple's edge (nginx).

Run from the repository root (so that `loadtest` is importable):

    .venv/bin/python -m locust -f loadtest/locust/locustfile.py              # web UI on :8089
    make load LOAD_SECONDS=60 LOAD_USERS=20                                # headless + report
    RIPPLE_LOADTEST_SHAPE=spike make load                                  # calm / spike / calm

Each simulated shopper gets its own client-credentials token from Keycloak (refreshed before it
expires) and sends CloudEvents with unique ids, in binary mode or as a checkout batch. nginx's
429 is not a failure: it is reported as "429 rejected" and the shopper waits Retry-After, as a
well-behaved client does. 503 (Kafka unavailable) and anything else unexpected are failures.
Settings: loadtest/scenarios/config.py.
"""

from __future__ import annotations

import time

from loadtest.scenarios.config import load_config, load_shape_config, locust_run_id
from loadtest.scenarios.shop import BATCH_CONTENT_TYPE, Event, Shop, TokenSource, batch_body, new_run_id
from locust import HttpUser, LoadTestShape, between, events, task
from locust.env import Environment

CONFIG = load_config()
SHAPE = load_shape_config()
RUN_ID = locust_run_id() or new_run_id("locust")
SHOP = Shop(RUN_ID)
REJECTED = "429 rejected"


@events.test_start.add_listener
def announce(environment: Environment, **_: object) -> None:
    print(f"ripple load: run id {RUN_ID}, events with source {SHOP.source}, target {environment.host}")


class Shopper(HttpUser):
    """One visitor of the shop. Task weights: mostly browsing, some orders, fewer payments."""

    host = CONFIG.target_url
    think_time = between(0.5, 2.0)

    def on_start(self) -> None:
        # One token per shopper, as one app instance would hold one; fetched once, refreshed early.
        self.tokens = TokenSource(CONFIG.token_url, CONFIG.client_id, CONFIG.client_secret)
        self.session_id = f"s-{SHOP.new_id()[:12]}"
        self.open_order: Event | None = None
        self.backoff_until = 0.0

    def wait_time(self) -> float:
        # Retry-After of the last 429/503 wins over the think time.
        return max(self.think_time(), self.backoff_until - time.monotonic())

    @task(10)
    def browse(self) -> None:
        self._send("page.viewed", [SHOP.pageview(self.session_id)])

    @task(3)
    def place_order(self) -> None:
        order = SHOP.order()
        if self._send("order.placed", [order]):
            self.open_order = order

    @task(2)
    def pay(self) -> None:
        if self.open_order is None:
            self.browse()
            return
        if self._send("payment.captured", [SHOP.payment(self.open_order)]):
            self.open_order = None

    @task(1)
    def checkout_batch(self) -> None:
        self._send("batch (checkout)", SHOP.checkout())

    def _send(self, name: str, batch: list[Event]) -> bool:
        if len(batch) == 1:
            headers, body = batch[0].binary_headers(), batch[0].body()
        else:
            headers, body = {"Content-Type": BATCH_CONTENT_TYPE}, batch_body(batch)
        headers.update(self.tokens.authorization())
        with self.client.post("/", data=body, headers=headers, name=name, catch_response=True) as response:
            status = response.status_code
            if status == 202:
                response.success()
                return True
            retry_after = _seconds(response.headers.get("Retry-After"))
            if status == 429:
                # Shown as its own row; not a failure: the edge protecting the gateway as designed.
                response.request_meta["name"] = REJECTED
                response.success()
                self.backoff_until = time.monotonic() + (retry_after or 1.0)
            elif status == 503:
                response.failure(f"503 {_problem_type(response)}")
                self.backoff_until = time.monotonic() + (retry_after or 1.0)
            else:
                response.failure(f"{status or 'no answer'} {_problem_type(response)}")
        return False


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _problem_type(response) -> str:
    """The problem+json `type` slug, so failures group by reason, not by message text."""
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except ValueError:
        return ""


if SHAPE.shape == "spike":

    class CalmSpikeCalm(LoadTestShape):
        """40 % of the time calm, 20 % a spike of shoppers arriving at once, 40 % calm again."""

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            if elapsed >= SHAPE.seconds:
                return None
            if SHAPE.seconds * 0.4 <= elapsed < SHAPE.seconds * 0.6:
                return SHAPE.spike_users, float(SHAPE.spike_users)  # everyone within a second
            # Spawn/stop at the spike's rate too, so the drop back to calm is as sudden as the rise.
            return SHAPE.calm_users, float(SHAPE.spike_users)
