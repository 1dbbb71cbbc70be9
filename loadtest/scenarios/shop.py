"""The shop's traffic: CloudEvents of the event catalog, and tokens for them.

Shared by the Locust load generator (loadtest/locust/) and the failure scenarios. Every event
carries the run's source ("/loadtest/<run-id>") and a unique id, and every order names products
("<run-id>-<sku>") that exist only in this run: the checks count exactly what one run sent, in
the `events` table and in Flink's agg_product_sales, even while other developers send traffic.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

ORDER = "dev.ripple.shop.order.placed"
PAYMENT = "dev.ripple.shop.payment.captured"
PAGEVIEW = "dev.ripple.shop.page.viewed"

CATALOG: tuple[tuple[str, float], ...] = (
    ("tee-black", 19.90),
    ("tee-white", 19.90),
    ("hoodie", 49.00),
    ("cap", 14.50),
    ("mug", 9.99),
    ("sticker-pack", 3.20),
    ("socks", 7.80),
    ("backpack", 64.00),
)
# Above order-alerts' ALERT_THRESHOLD (1000) on its own; the catalog's orders stay below it (at most
# 3 lines of 3 x 64.00 = 576), so an order is flagged exactly when it holds this.
BIG_TICKET: tuple[str, float] = ("espresso-machine", 1249.00)
PATHS = ("/", "/shop", "/shop/tees", "/shop/hoodies", "/cart", "/checkout", "/account", "/search")
METHODS = ("card", "card", "card", "paypal", "invoice")


@dataclass(frozen=True)
class Event:
    """One CloudEvent as the shop sends it (the gateway adds tenant and partition key)."""

    id: str
    source: str
    type: str
    data: dict[str, Any]
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def attributes(self) -> dict[str, str]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
        }

    def binary_headers(self) -> dict[str, str]:
        """HTTP binary mode: attributes as ce-* headers, data as the JSON body."""
        headers = {f"ce-{name}": value for name, value in self.attributes().items()}
        return headers | {"Content-Type": "application/json"}

    def body(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":")).encode()

    def structured(self) -> dict[str, Any]:
        return self.attributes() | {"datacontenttype": "application/json", "data": self.data}


def batch_body(events: list[Event]) -> bytes:
    """application/cloudevents-batch+json: a JSON array of structured events."""
    return json.dumps([event.structured() for event in events], separators=(",", ":")).encode()


BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


class Shop:
    """Makes the events of one run: customers browse, order a few products, and pay."""

    def __init__(self, run_id: str, source: str | None = None, seed: int | None = None) -> None:
        self.run_id = run_id
        self.source = source or f"/loadtest/{run_id}"
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # random.Random is not safe to share between threads

    def sku(self, name: str) -> str:
        return f"{self.run_id}-{name}"

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def pageview(self, session_id: str | None = None) -> Event:
        with self._lock:
            path = self._random.choice(PATHS)
            referrer = self._random.choice(("https://search.example/", "/shop", None))
        data: dict[str, Any] = {"sessionId": session_id or f"s-{self.new_id()[:12]}", "path": path}
        if referrer:
            data["referrer"] = referrer
        return Event(self.new_id(), self.source, PAGEVIEW, data)

    def order(self, customer_id: str | None = None, flagged: bool = False) -> Event:
        """An order of 1-3 catalog products; `flagged` adds the BIG_TICKET (above the alert threshold)."""
        with self._lock:
            picks = self._random.sample(CATALOG, k=self._random.randint(1, 3))
            quantities = [self._random.choice((1, 1, 1, 2, 3)) for _ in picks]
        if flagged:
            picks, quantities = [BIG_TICKET, *picks[:2]], [1, *quantities[:2]]
        items = [
            {"sku": self.sku(name), "quantity": quantity, "unitPrice": price}
            for (name, price), quantity in zip(picks, quantities, strict=True)
        ]
        # Cents as integers, so that sums compare exactly with PostgreSQL's numeric.
        amount = sum(round(item["unitPrice"] * 100) * item["quantity"] for item in items) / 100
        data = {
            "orderId": f"o-{self.new_id()[:16]}",
            "customerId": customer_id or f"c-{self.new_id()[:8]}",
            "items": items,
            "amount": amount,
            "currency": "EUR",
        }
        return Event(self.new_id(), self.source, ORDER, data)

    def payment(self, order: Event) -> Event:
        with self._lock:
            method = self._random.choice(METHODS)
        data = {
            "paymentId": f"p-{self.new_id()[:16]}",
            "orderId": order.data["orderId"],
            "amount": order.data["amount"],
            "currency": order.data["currency"],
            "method": method,
        }
        return Event(self.new_id(), self.source, PAYMENT, data)

    def checkout(self) -> list[Event]:
        """A small batch as a web shop flushes it: views, the order, its payment."""
        session = f"s-{self.new_id()[:12]}"
        order = self.order()
        return [self.pageview(session), self.pageview(session), order, self.payment(order)]

    def burst(self, events: int, order_share: float, flagged_share: float) -> list[Event]:
        """A batch of `events` as a busy shop flushes it: orders (a share of them flagged), their
        payments and page views."""
        batch: list[Event] = []
        unpaid: list[Event] = []
        for _ in range(events):
            with self._lock:
                is_order, is_flagged, pays = (
                    self._random.random() < share for share in (order_share, flagged_share, 0.5)
                )
            if is_order:
                order = self.order(flagged=is_flagged)
                unpaid.append(order)
                batch.append(order)
            elif unpaid and pays:
                batch.append(self.payment(unpaid.pop()))
            else:
                batch.append(self.pageview())
        return batch


class TokenError(RuntimeError):
    """Keycloak refused or did not answer; the message says what to check."""


class TokenSource:
    """A client-credentials access token, fetched once and refreshed before it expires.

    Thread-safe: the scenario drivers share one; Locust users keep one each.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_margin_s: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_margin_s = refresh_margin_s
        self._session = session or requests.Session()
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if time.monotonic() >= self._expires_at - self.refresh_margin_s:
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        try:
            response = self._session.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.client_secret),
                timeout=10,
            )
        except requests.RequestException as error:
            raise TokenError(
                f"Keycloak at {self.token_url} did not answer ({error}): is it running?"
            ) from error
        if response.status_code != 200:
            raise TokenError(
                f"Keycloak refused a token for {self.client_id} ({response.status_code}): "
                f"check the client secret. {response.text[:200]}"
            )
        document = response.json()
        self._token = document["access_token"]
        # Refresh early; a very short lifetime still gets half of it.
        lifetime = float(document.get("expires_in", 300))
        self.refresh_margin_s = min(self.refresh_margin_s, lifetime / 2)
        self._expires_at = time.monotonic() + lifetime

    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


def new_run_id(prefix: str = "lt") -> str:
    """Short, sortable, unique: lt-20261125t2030-1a2b3c."""
    return f"{prefix}-{datetime.now(UTC):%Y%m%dt%H%M%S}-{uuid.uuid4().hex[:6]}"
