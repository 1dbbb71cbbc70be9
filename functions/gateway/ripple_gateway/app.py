"""The gateway's HTTP surface; main.handle delegates every request here.

Asynchronous (ripple_server.aio on uvicorn): a request waiting for Kafka's
acknowledgement is a coroutine, and the HTTP stack costs a fraction of Flask's per request.
Anything that may block (a token not seen before, whose check may fetch the realm's keys; the
readiness probe's metadata request) runs on a worker thread.

POST /            CloudEvents (binary, structured, batch) -> Kafka; 202 once all are acknowledged
GET  /healthz     liveness: the process answers
GET  /readyz      readiness: Kafka reachable and the realm's keys loaded
GET  /metrics     Prometheus
GET  /openapi.yaml  the OpenAPI document of this surface
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ripple_auth import PROBLEM_MEDIA_TYPE, Authenticator, Problem, forbidden, require_roles
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


class _AccessHandler(logging.StreamHandler):
    """The access log's handler: one line per POST, each the message as is (no record fields)."""

    terminator = "\n"

    def write_line(self, line: str) -> None:
        """What emit() does for a record of `line`, without building the record: the logging
        module's record (caller lookup, LogRecord, formatter) was 8 % of a request's CPU."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + self.terminator)
            self.stream.flush()


def _setup_logging() -> None:
    # One JSON object per line on stdout; warnings of the modules go to stderr.
    if not access_log.handlers:
        handler = _AccessHandler(sys.stdout)
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

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        info: dict[str, Any] = {}
        # The URL object starlette builds for request.url was 3 % of a request: "/" is taken as is.
        path = "/" if request.scope["path"] == "/" else request.url.path
        try:
            response = await self._route(request, path, info)
        except Problem as problem:
            info["reason"] = problem.reason
            response = problem_response(problem)
        except RecursionError:
            # Parsed JSON that is still too deep for a later step (schema checks, the record).
            problem = Problem(400, "malformed-event", events.TOO_DEEP.format(what="the body"))
            info["reason"] = problem.reason
            response = problem_response(problem)
        except Exception:
            # The trace goes to the log only; the client gets a problem without internals.
            log.exception("unexpected error handling %s %s", request.method, path)
            response = problem_response(Problem(500, "internal-error", "the gateway failed; retry later"))
        elapsed = time.perf_counter() - started
        if path == "/" and request.method == "POST":
            metrics.requests(response.status_code, info.get("event_type", "none")).inc()
            metrics.REQUEST_SECONDS.observe(elapsed)
            _access(
                orjson.dumps(
                    {
                        "time": events.receive_time(),
                        "request_id": request.headers.get("X-Request-ID"),
                        "method": request.method,
                        "path": path,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2),
                        **info,
                    }
                ).decode()
            )
        return response

    async def _route(self, request: Request, path: str, info: dict[str, Any]) -> Response:
        methods = ROUTES.get(path)
        if methods is None:
            raise Problem(404, "not-found", f"nothing at {path}: POST events to /")
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            raise Problem(
                405,
                "method-not-allowed",
                f"{request.method} is not allowed on {path}: use {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        if path == "/":
            return await self.post_events(request, info)
        if path == "/healthz":
            return Response('{"status":"ok"}', media_type="application/json")
        if path == "/readyz":
            return await self.readiness()
        if path == "/metrics":
            body, content_type = metrics.exposition()
            return Response(body, headers={"Content-Type": content_type})
        return Response(_openapi(), media_type="application/yaml")

    async def readiness(self) -> Response:
        checks = {}
        # Both at once: at a cold start the first probe waits for the producer's first metadata
        # request and the realm's keys, and the instance is not ready before both (issue 22).
        kafka, keys = await asyncio.gather(asyncio.to_thread(self.publisher.ready), self._keys_ready())
        ok, checks["kafka"] = kafka
        checks["keys"] = "ok" if keys else "the realm's signing keys are not loaded (Keycloak unreachable?)"
        ready = ok and keys
        return Response(
            json.dumps({"status": "ready" if ready else "not ready", "checks": checks}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    async def _keys_ready(self) -> bool:
        # A fresh coroutine per probe: a coroutine can be awaited once (a cached one made every
        # probe after the first a 500).
        return self.auth.keys_loaded or await asyncio.to_thread(self.auth.refresh)

    async def post_events(self, request: Request, info: dict[str, Any]) -> Response:
        body = await _read_body(request, self.config.max_body_bytes)
        authorization = request.headers.get("Authorization")
        principal = self.auth.cached(authorization) or await asyncio.to_thread(
            self.auth.authenticate, authorization
        )
        info.update(tenant=principal.tenant, client=principal.client)
        incoming = events.parse_request(request.headers, body, self.config.max_batch_events)
        info["events"] = len(incoming)
        entries = events.resolve_types(incoming, self.catalog)
        # The request's distinct types, looked at once each rather than once per event of a batch.
        kinds = {entry.type: entry for entry in entries}
        info["event_type"] = next(iter(kinds)) if len(kinds) == 1 else "mixed"
        internal = sorted(kind.type for kind in kinds.values() if not kind.publishable)
        if internal:
            raise forbidden(
                "internal_type", f"{', '.join(internal)} is internal to ripple and cannot be published"
            )
        require_roles(principal, {kind.publish_role for kind in kinds.values() if kind.publish_role})
        events.validate_data(incoming, entries)
        now = events.receive_time()
        records = [
            events.to_record(item, entry, principal.tenant, now)
            for item, entry in zip(incoming, entries, strict=True)
        ]
        ids = [record.event_id for record in records]
        accepted = Counter(record.event_type for record in records) if len(kinds) > 1 else None
        # Once the producer has the records, only their ids and types are needed: the parsed events
        # and the records die before the wait for Kafka's acknowledgements rather than after it.
        # Alive through the wait, the objects of every waiting request were scanned and promoted
        # by the collections the other requests' allocations triggered: ~15 % of a batch event's
        # CPU (loadtest/gateway/profiles/issue22/README.md). publish() drops its own reference.
        del incoming, entries
        publishing = self.publisher.publish(records)
        del records
        await publishing
        if accepted is None:
            metrics.accepted(info["event_type"]).inc(len(ids))
        else:
            for event_type, count in accepted.items():
                metrics.accepted(event_type).inc(count)
        metrics.BATCH_SIZE.observe(len(ids))
        body_out = {"accepted": len(ids), "ids": ids}
        return Response(json.dumps(body_out), status_code=202, media_type="application/json")


def _access(line: str) -> None:
    """One access-log line: straight to the gateway's own handler when it is the only one (as
    _setup_logging installs it), through the logging module when someone configured others."""
    handlers = access_log.handlers
    if len(handlers) == 1 and type(handlers[0]) is _AccessHandler and access_log.isEnabledFor(logging.INFO):
        handlers[0].write_line(line)
    else:
        access_log.info(line)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        f"the body exceeds {limit} bytes: split it into smaller batches",
        headers={"Connection": "close"},
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read at most limit+1 bytes deep; 413 above the limit (the connection is closed)."""
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
    return b"".join(chunks)


def problem_response(problem: Problem) -> Response:
    return Response(
        json.dumps(problem.body()),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


@cache
def _openapi() -> bytes:
    return OPENAPI_FILE.read_bytes()


def gateway() -> Gateway:
    _setup_logging()
    config = load_config()
    instance = Gateway(config)
    _tune_gc(config.gc_gen0_threshold)
    return instance


def _tune_gc(gen0_threshold: int) -> None:
    """Keep the garbage collector off the request path (loadtest/gateway/profiles/README.md).

    A request allocates a few hundred container objects, and 32 requests are in flight: with
    Python's default threshold (700) a young-generation collection ran every ~10 requests, found
    the in-flight requests' objects alive, promoted them, and the older generations' collections
    then walked every long-lived object (imports, the catalog's compiled schemas): ~15 % of a
    request's CPU. Everything alive once the gateway is built lives as long as the process, so it
    is frozen (never scanned again), and collections run after `gen0_threshold` net allocations.
    """
    gc.freeze()
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
