"""The gateway's HTTP surface; main.handle delegates every request here.

POST /            CloudEvents (binary, structured, batch) -> Kafka; 202 once all are acknowledged
GET  /healthz     liveness: the process answers
GET  /readyz      readiness: Kafka reachable and the realm's keys loaded
GET  /metrics     Prometheus
GET  /openapi.yaml  the OpenAPI document of this surface
"""

from __future__ import annotations

import json
import logging
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException

from ripple_auth import Authenticator, Problem, forbidden, require_roles
from ripple_events import load_catalog

from . import events, metrics
from .config import Config, load_config
from .publisher import Publisher

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"
ROUTES = {
    "/": ("POST",),
    "/healthz": ("GET",),
    "/readyz": ("GET",),
    "/metrics": ("GET",),
    "/openapi.yaml": ("GET",),
}

access_log = logging.getLogger("ripple_gateway.access")
log = logging.getLogger("ripple_gateway")


def _setup_logging() -> None:
    # One JSON object per line on stdout; warnings of the modules go to stderr.
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    if not log.handlers:
        errors = logging.StreamHandler(sys.stderr)
        errors.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(errors)
        log.setLevel(logging.INFO)


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog = load_catalog()
        self.auth = Authenticator(config.tokens)
        self.publisher = Publisher(config)

    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        info: dict[str, Any] = {}
        try:
            response = self._route(request, info)
        except Problem as problem:
            info["reason"] = problem.reason
            response = problem.response()
        except Exception:
            # The trace goes to the log only; the client gets a problem without internals.
            log.exception("unexpected error handling %s %s", request.method, request.path)
            response = Problem(500, "internal-error", "the gateway failed; retry later").response()
        elapsed = time.perf_counter() - started
        if request.path == "/" and request.method == "POST":
            metrics.REQUESTS.labels(
                status=str(response.status_code), event_type=info.get("event_type", "none")
            ).inc()
            metrics.REQUEST_SECONDS.observe(elapsed)
            access_log.info(
                json.dumps(
                    {
                        "time": events.receive_time(),
                        "request_id": request.headers.get("X-Request-ID"),
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2),
                        **info,
                    }
                )
            )
        return response

    def _route(self, request: Request, info: dict[str, Any]) -> Response:
        methods = ROUTES.get(request.path)
        if methods is None:
            raise Problem(404, "not-found", f"nothing at {request.path}: POST events to /")
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            raise Problem(
                405,
                "method-not-allowed",
                f"{request.method} is not allowed on {request.path}: use {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        if request.path == "/":
            return self.post_events(request, info)
        if request.path == "/healthz":
            return Response('{"status":"ok"}', mimetype="application/json")
        if request.path == "/readyz":
            return self.readiness()
        if request.path == "/metrics":
            body, content_type = metrics.exposition()
            return Response(body, content_type=content_type)
        return Response(_openapi(), mimetype="application/yaml")

    def readiness(self) -> Response:
        checks = {}
        ok, checks["kafka"] = self.publisher.ready()
        keys = self.auth.keys_loaded or self.auth.refresh()
        checks["keys"] = "ok" if keys else "the realm's signing keys are not loaded (Keycloak unreachable?)"
        ready = ok and keys
        return Response(
            json.dumps({"status": "ready" if ready else "not ready", "checks": checks}),
            status=200 if ready else 503,
            mimetype="application/json",
        )

    def post_events(self, request: Request, info: dict[str, Any]) -> Response:
        body = _read_body(request, self.config.max_body_bytes)
        principal = self.auth.authenticate(request.headers.get("Authorization"))
        info.update(tenant=principal.tenant, client=principal.client)
        incoming = events.parse_request(request.headers, body, self.config.max_batch_events)
        info["events"] = len(incoming)
        entries = events.resolve_types(incoming, self.catalog)
        types = {entry.type for entry in entries}
        info["event_type"] = types.pop() if len(types) == 1 else "mixed"
        internal = sorted({entry.type for entry in entries if not entry.publishable})
        if internal:
            raise forbidden(
                "internal_type", f"{', '.join(internal)} is internal to ripple and cannot be published"
            )
        require_roles(principal, {entry.publish_role for entry in entries if entry.publish_role})
        events.validate_data(incoming, entries)
        now = events.receive_time()
        records = [
            events.to_record(item, entry, principal.tenant, now)
            for item, entry in zip(incoming, entries, strict=True)
        ]
        self.publisher.publish(records)
        for record in records:
            metrics.EVENTS_ACCEPTED.labels(event_type=record.event_type).inc()
        metrics.BATCH_SIZE.observe(len(records))
        body_out = {"accepted": len(records), "ids": [record.event_id for record in records]}
        return Response(json.dumps(body_out), status=202, mimetype="application/json")


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        f"the body exceeds {limit} bytes: split it into smaller batches",
        headers={"Connection": "close"},
    )


def _read_body(request: Request, limit: int) -> bytes:
    """The body, read at most limit+1 bytes deep; 413 above the limit.

    functions-framework reads the whole body after every response (to keep the connection
    usable). An oversized body is not read: the cached body is set empty and the connection
    closed after the 413, so a huge upload costs neither memory nor time.
    """
    if request.content_length is not None and request.content_length > limit:
        request._cached_data = b""  # werkzeug's get_data cache, read by functions-framework
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        # The stream may return short reads; loop until the end or one byte past the limit.
        chunk = request.stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        request._cached_data = b""
        raise _too_large(limit)
    body = b"".join(chunks)
    request._cached_data = body
    return body


def http_exception_problem(error: HTTPException) -> Response:
    """Errors raised by Flask/werkzeug outside the handler, as problems (never HTML)."""
    code = error.code or 500
    slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(code, "internal-error")
    if code < 500 and slug == "internal-error":
        slug = "malformed-event"
    detail = error.description if code < 500 else "the gateway failed; retry later"
    return Problem(code, slug, str(detail)).response()


@cache
def _openapi() -> bytes:
    return OPENAPI_FILE.read_bytes()


@cache
def gateway() -> Gateway:
    _setup_logging()
    return Gateway(load_config())
