"""HTTP details of the consumer functions: problem+json answers and the probe/metrics routes.

A consumer is either a plain functions-framework CloudEvent function (Flask, one request per
thread: none of ripple's since issue 22) or an asynchronous one (`ripple_server.aio`, a Starlette
app served by uvicorn without importing Flask: all four consumers; on the Kafka hot path
the Flask stack cost ~0.5 ms of CPU per event against ~0.1 ms; a function still written for
`functions_framework.aio` works too). Both get the same routes and the same problems.
Flask is imported only by the Flask functions' paths here: importing this module costs an
asynchronous function no Flask at its cold start (issue 22).

Both also read binary-mode attributes as the CloudEvents HTTP binding asks (3.1.3.2): the pinned
SDK's from_http, which functions-framework calls, copies `ce-*` header values as they are, and
the HTTP servers read header bytes as Latin-1, so `caf%C3%A9` stayed `caf%C3%A9` and raw UTF-8
turned into `cafÃ©`. functions-framework (and ripple_server.aio, likewise) looks `from_http` up in
its own module at each request: `decode_binary_attributes` puts a decoding one there (a header
that cannot be decoded is a 400 problem naming the attribute). Raw UTF-8 is taken too: Knative's
Go and Java data planes send attribute values unencoded (ripple_cloudevents.decode_value).
A 1.0 binary-mode event is then built by ripple_cloudevents.read_binary_event, which gives what
the SDK gives without its marshaller (~20 % of a consumer's CPU per event, issue 22).
functions/ripple_consumer/tests/test_consumer_http.py pins those hooks, so a functions-framework
upgrade that moves it fails there first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import ripple_server
from cloudevents.http import CloudEvent
from cloudevents.http import from_http as sdk_from_http
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from ripple_server import aio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ripple_cloudevents import InvalidAttribute, decode_headers, is_plain_binary, read_binary_event

PROBLEM_TYPE = "application/problem+json"


def problem_body(status: int, slug: str, title: str, detail: str) -> str:
    body = {"type": f"https://ripple.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    return json.dumps(body)


def problem(status: int, slug: str, title: str, detail: str) -> HTTPException:
    """The RFC 9457 problem an asynchronous function raises: `raise problem(...)`.

    Starlette answers an HTTPException with its detail as the body and keeps a content-type
    given in its headers, so no exception handler has to be registered for it.
    """
    return HTTPException(status, problem_body(status, slug, title, detail), {"content-type": PROBLEM_TYPE})


def _metrics() -> tuple[bytes, int, dict[str, str]]:
    return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}


async def _ok(_: Request) -> Response:
    return PlainTextResponse("ok")


async def _asgi_metrics(_: Request) -> Response:
    body, status, headers = _metrics()
    return Response(body, status, headers)


# functions-framework's own refusals (a request that is no CloudEvent, a GET to the function),
# said as problems like ripple's.
_FRAMEWORK_PROBLEMS = {400: ("malformed-event", "Not a CloudEvent"), 404: ("not-found", "Not found")}


# functions-framework.aio wraps every from_http error as "Bad Request: Got CloudEvent exception: <repr>".
_FRAMEWORK_PREFIX = "Bad Request: Got CloudEvent exception: "


async def _as_problem(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if headers.get("content-type") != PROBLEM_TYPE:
        slug, title = _FRAMEWORK_PROBLEMS.get(error.status_code, ("http-error", "Request refused"))
        error = problem(error.status_code, slug, title, str(error.detail).removeprefix(_FRAMEWORK_PREFIX))
        headers = {**headers, **(error.headers or {})}
    return Response(error.detail, error.status_code, headers)


FromHttp = Callable[..., CloudEvent]


def _decoding(raise_problem: Callable[[InvalidAttribute], Exception]) -> FromHttp:
    def from_http(headers: Mapping[str, str], data: Any, data_unmarshaller: Any = None) -> CloudEvent:
        if "ce-specversion" in headers:  # binary mode; a structured event's attributes are JSON
            try:
                headers = decode_headers(headers.items(), raw_utf8=True)
            except InvalidAttribute as error:
                raise raise_problem(error) from None
            if data_unmarshaller is None and is_plain_binary(headers):
                # What the SDK would build, without its marshaller (~20 % of an instance's CPU).
                return read_binary_event(headers, data)
        return sdk_from_http(headers, data, data_unmarshaller)

    return from_http


def _flask_problem(error: InvalidAttribute) -> Exception:
    # An HTTPException passes functions-framework's Flask wrapper untouched (it catches only the
    # SDK's missing/invalid-field errors, to try the legacy event format) and Flask sends its response.
    import flask
    from werkzeug.exceptions import BadRequest

    body = problem_body(400, "malformed-event", "Not a valid CloudEvent", str(error))
    return BadRequest(response=flask.Response(body, status=400, mimetype=PROBLEM_TYPE))


def decode_binary_attributes(app: Any) -> None:
    """The from_http of whoever serves this app's CloudEvents replaced by the binding-aware one:
    ripple_server.aio's, or functions-framework's (Flask, or its aio) for a function written for it."""
    if isinstance(app, Starlette):
        # The aio wrappers turn any error into a 400 whose detail is the error's repr (_as_problem).
        aio.from_http = _decoding(lambda error: error)
        framework_aio = sys.modules.get("functions_framework.aio")
        if framework_aio is not None:
            framework_aio.from_http = aio.from_http
    else:
        import functions_framework

        functions_framework.from_http = _decoding(_flask_problem)


def add_routes(app: Any) -> None:
    """GET /healthz, /readyz and /metrics next to functions-framework's POST-only routes."""
    # Readiness stays cheap: an unreachable database is signalled per event with 503, which the
    # dispatcher retries, rather than by taking the pod out of rotation.
    if isinstance(app, Starlette):
        # Ahead of functions-framework's POST /{path:path}, which would answer them 405.
        app.router.routes[:0] = [
            Route("/healthz", _ok, methods=["GET"]),
            Route("/readyz", _ok, methods=["GET"]),
            Route("/metrics", _asgi_metrics, methods=["GET"]),
        ]
        app.add_exception_handler(HTTPException, _as_problem)
        return
    app.add_url_rule("/healthz", "healthz", lambda: ("ok", 200), methods=["GET"])
    app.add_url_rule("/readyz", "readyz", lambda: ("ok", 200), methods=["GET"])
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


def create_app(source: str, target: str = "handle") -> Any:
    """The function's app as its container serves it (ripple_consumer.serve): with the routes."""
    framework_registry = sys.modules.get("functions_framework._function_registry")
    if framework_registry is not None:
        # functions-framework remembers async targets by name in one process-wide set, and every
        # consumer's target is `handle`: a process that loads several (the tests) starts afresh.
        framework_registry.ASGI_FUNCTIONS.discard(target)
    app = ripple_server.load_app(source, target, "cloudevent")
    add_routes(app)
    decode_binary_attributes(app)
    return app
