"""The query function's HTTP surface; main.handle delegates every request here.

GET /v1/aggregates/per-minute  events per tenant, type and minute (Flink's tumbling windows)
                               ?type=<event type>&since=<RFC 3339>&until=<RFC 3339>&limit=<n>
GET /v1/aggregates/products    running revenue, quantity and order lines per product  ?sku=<sku>&limit=<n>
GET /v1/aggregates/totals      running totals of the tenant: orders, payments, page views
GET /healthz                   liveness
GET /readyz                    readiness: PostgreSQL answers and the realm's keys are loaded
GET /metrics                   Prometheus

Every /v1 request needs a bearer token with the QUERY_ROLE role; the tenant is the token's, so
a caller sees its own tenant's rows and nothing else.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from flask import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from ripple_auth import Authenticator, Problem, require_roles

from . import store
from .config import Config

log = logging.getLogger("ripple_query")

REQUESTS = Counter("ripple_query_requests_total", "Requests by path and HTTP status", ["path", "status"])
REQUEST_SECONDS = Histogram("ripple_query_request_duration_seconds", "Time to answer a /v1 request", ["path"])

ROUTES = {
    "/v1/aggregates/per-minute": "per_minute",
    "/v1/aggregates/products": "products",
    "/v1/aggregates/totals": "totals",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _time_parameter(request: Request, name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, "invalid-query", f"{name}={raw!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise Problem(400, "invalid-query", f"{name}={raw!r} needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return value


class Query:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.auth = Authenticator(config.tokens)
        self.engine = store.create_engine(config)

    def handle(self, request: Request) -> Response:
        route = ROUTES.get(request.path)
        started = time.perf_counter()
        try:
            if route is None:
                raise Problem(404, "not-found", f"nothing at {request.path}; see {', '.join(ROUTES)}")
            if request.method != "GET":
                raise Problem(
                    405, "method-not-allowed", f"{request.path} answers GET only", headers={"Allow": "GET"}
                )
            response = getattr(self, route)(request)
        except Problem as problem:
            response = problem.response()
        except SQLAlchemyError as error:
            log.warning("database error on %s: %s", request.path, error.__class__.__name__)
            response = Problem(
                503,
                "database-unavailable",
                "the aggregates cannot be read right now; retry later",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ).response()
        except Exception:
            log.exception("unexpected error handling %s", request.path)
            response = Problem(500, "internal-error", "the query failed; retry later").response()
        if route in ("per_minute", "products", "totals"):
            REQUESTS.labels(path=request.path, status=str(response.status_code)).inc()
            REQUEST_SECONDS.labels(path=request.path).observe(time.perf_counter() - started)
        return response

    def _tenant(self, request: Request) -> str:
        principal = self.auth.authenticate(request.headers.get("Authorization"))
        require_roles(principal, [self.config.role])
        return principal.tenant

    def _limit(self, request: Request) -> int:
        raw = request.args.get("limit", "100")
        if not raw.isdigit() or int(raw) < 1:
            raise Problem(400, "invalid-query", f"limit={raw!r} must be a positive whole number")
        return min(int(raw), self.config.max_rows)

    def per_minute(self, request: Request) -> Response:
        tenant = self._tenant(request)
        rows = store.per_minute(
            self.engine,
            tenant,
            event_type=request.args.get("type"),
            since=_time_parameter(request, "since"),
            until=_time_parameter(request, "until"),
            limit=self._limit(request),
        )
        return _json({"tenant": tenant, "rows": rows})

    def products(self, request: Request) -> Response:
        tenant = self._tenant(request)
        rows = store.products(self.engine, tenant, sku=request.args.get("sku"), limit=self._limit(request))
        return _json({"tenant": tenant, "rows": rows})

    def totals(self, request: Request) -> Response:
        tenant = self._tenant(request)
        totals = store.totals(self.engine, tenant)
        empty = {"orders": 0, "order_amount": 0, "payments": 0, "payment_amount": 0, "pageviews": 0}
        return _json({"tenant": tenant, "totals": totals or empty})

    def healthz(self, request: Request) -> Response:
        return _json({"status": "alive"})

    def readyz(self, request: Request) -> Response:
        if not self.auth.keys_loaded:
            self.auth.refresh()
        problems = [] if self.auth.keys_loaded else ["the realm's signing keys are not loaded"]
        try:
            store.ping(self.engine)
        except SQLAlchemyError:
            problems.append("PostgreSQL does not answer")
        if problems:
            return _json({"status": "not ready", "problems": problems}, status=503)
        return _json({"status": "ready"})

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
