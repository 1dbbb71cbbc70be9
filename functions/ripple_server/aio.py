"""Asynchronous functions without Flask: functions_framework.aio's app, built on Starlette alone.

`functions_framework.aio` cannot be imported without the `functions_framework` package, and that
package imports Flask and Werkzeug first: ~120-190 ms of CPU at every cold start of a function that
never uses them (issue 22). A function decorated here instead,

    from ripple_server import aio

    @aio.cloud_event            # or @aio.http
    async def handle(event): ...

is served by ripple_server with the app functions_framework.aio 3.10 builds for it, without
importing functions_framework: the same routes (http: every path and method functions-framework
routes, GET /robots.txt and /favicon.ico a plain 404; cloudevent: POST on every path), the same
answers (a request that is no CloudEvent: 400 "Bad Request: Got CloudEvent exception: <repr>"; a
function that returns None: 500; an uncaught exception: logged, 500 text/plain with
`X-Google-Status: crash`), a synchronous function run on a worker thread. Not carried over:
functions-framework's execution ids (the `Function-Execution-Id` header it adds and its
LOG_EXECUTION_ID logging); ripple's functions log their own request ids.

A CloudEvent function's POSTs are read and answered without Starlette's middleware stack and
router (`_CloudEventApp`: ~15 % of a consumer's CPU per event), with the same answers.
`from_http` is looked up here at each request, as functions-framework looks up its own:
ripple_consumer.http replaces it with the HTTP binding's attribute decoding.
A source module may define `wrap_app(app)`: ripple_server then serves what it returns (the gateway
puts its fast path for POST / in front of the app).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from cloudevents.http import from_http
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["cloud_event", "create_app", "from_http", "http", "load_app"]

HTTP, CLOUDEVENT = "http", "cloudevent"
# The attribute the decorators set on a function: its signature type.
SIGNATURE_ATTRIBUTE = "ripple_signature_type"
METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"]
STATUS_HEADER = b"x-google-status"  # functions-framework's crash marker


class FunctionLoadError(SystemExit):
    """The source or its function is unusable: the process stops with this sentence."""


def http(function: Callable[..., Any]) -> Callable[..., Any]:
    """An HTTP function: called with a Starlette Request; returns a Response, str, dict or (body, status)."""
    setattr(function, SIGNATURE_ATTRIBUTE, HTTP)
    return function


def cloud_event(function: Callable[..., Any]) -> Callable[..., Any]:
    """A CloudEvent function: called with the request's CloudEvent; answered 200 "OK" when it returns."""
    setattr(function, SIGNATURE_ATTRIBUTE, CLOUDEVENT)
    return function


async def _call(function: Callable[..., Any], argument: Any) -> Any:
    if inspect.iscoroutinefunction(function):
        return await function(argument)
    return await asyncio.to_thread(function, argument)  # context variables go with it


def _http_endpoint(function: Callable[..., Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        result = await _call(function, request)
        if isinstance(result, str):
            return Response(result)
        if isinstance(result, dict):
            return JSONResponse(result)
        if isinstance(result, tuple) and len(result) == 2:
            content, status = result
            if isinstance(content, dict):
                return JSONResponse(content, status_code=status)
            return Response(content, status_code=status)
        if result is None:
            raise HTTPException(status_code=500, detail="No response returned")
        return result

    return endpoint


async def _posted_elsewhere(_: Request) -> Response:
    # The routes of a CloudEvent function only make other methods a 405: _CloudEventApp answers POSTs.
    raise AssertionError("a CloudEvent function's POST is served by _CloudEventApp")


async def _not_found(_: Request) -> Response:
    raise HTTPException(status_code=404, detail="Not Found")


async def _answer_crash(scope: Scope, send: Send, error: Exception) -> None:
    """An uncaught exception: its trace to the log, a plain 500 marked `X-Google-Status: crash`."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    where = f"{scope.get('path', '/')} [{scope.get('method', 'GET')}]"
    logging.getLogger().error(f"Exception on {where}\n{trace}".rstrip())
    headers = [(b"content-type", b"text/plain"), (STATUS_HEADER, b"crash")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": b"Internal Server Error"})


class _CrashAnswer:
    """Middleware: an uncaught exception answered by _answer_crash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            await _answer_crash(scope, send, error)


_OK_HEADERS = [(b"content-length", b"2")]  # Response("OK"): no media type


class _CloudEventApp(Starlette):
    """The app of a CloudEvent function, its POSTs answered without Starlette's stack.

    Every POST goes to the function, whatever its path (the routes say so), and its answers are
    few: "OK"; the 400 of a request that is no CloudEvent; an exception the function raises,
    answered by the app's handler for it (Starlette's plain text for an HTTPException, or what
    was registered, e.g. ripple_consumer's problems); else the crash answer. Starlette's
    middleware stack, router and Request were ~15 % of a consumer instance's CPU per event
    (event-store under the dispatcher bench, py-spy --gil, issue 22), so a POST is read and
    answered here, with the answers the stack gives (tests/test_ripple_server_aio.py sends the
    same table to functions_framework.aio's app). Other methods take the stack: 405, and the
    probe routes a consumer adds.
    """

    def __init__(self, function: Callable[..., Any], routes: list[Route]) -> None:
        super().__init__(routes=routes, middleware=[Middleware(_CrashAnswer)])
        self._function = function

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        try:
            await self._post(scope, receive, send)
        except Exception as error:
            await _answer_crash(scope, send, error)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            # The module's from_http at each request: ripple_consumer.http may have replaced it.
            event = from_http(headers, body)
        except Exception as error:
            refused = HTTPException(400, detail=f"Bad Request: Got CloudEvent exception: {error!r}")
            await self._answer_error(scope, receive, send, refused)
            return
        try:
            await _call(self._function, event)
        except Exception as error:
            await self._answer_error(scope, receive, send, error)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
        await send({"type": "http.response.body", "body": b"OK"})

    async def _answer_error(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        """As Starlette's ExceptionMiddleware: a handler by status code, then by class; HTTPException's
        default is plain text; an exception without a handler is a crash."""
        registered = self.exception_handlers.items()
        handlers = {key: handler for key, handler in registered if key not in (500, Exception)}
        handler = handlers.get(error.status_code) if isinstance(error, HTTPException) else None
        if handler is None:
            handler = next((handlers[cls] for cls in type(error).__mro__ if cls in handlers), None)
        if handler is None and isinstance(error, HTTPException):
            handler = _plain_http_exception
        if handler is None:
            raise error
        response = handler(Request(scope, receive), error)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def _plain_http_exception(_: Request, error: Exception) -> Response:
    """Starlette's default answer to an HTTPException (ExceptionMiddleware.http_exception)."""
    assert isinstance(error, HTTPException)
    if error.status_code in {204, 304}:
        return Response(status_code=error.status_code, headers=error.headers)
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)


def create_app(function: Callable[..., Any], signature_type: str) -> Starlette:
    """The Starlette app functions_framework.aio builds for `function` (without execution ids)."""
    if signature_type == HTTP:
        endpoint = _http_endpoint(function)
        routes = [
            Route("/", endpoint=endpoint, methods=METHODS),
            Route("/robots.txt", endpoint=_not_found, methods=["GET"]),
            Route("/favicon.ico", endpoint=_not_found, methods=["GET"]),
            Route("/{path:path}", endpoint=endpoint, methods=METHODS),
        ]
    elif signature_type == CLOUDEVENT:
        routes = [
            Route("/{path:path}", endpoint=_posted_elsewhere, methods=["POST"]),
            Route("/", endpoint=_posted_elsewhere, methods=["POST"]),
        ]
        return _CloudEventApp(function, routes)
    else:
        raise FunctionLoadError(
            f"ripple_server.aio: signature type {signature_type!r} is not served: use http or cloudevent."
        )
    return Starlette(routes=routes, middleware=[Middleware(_CrashAnswer)])


def load_app(source: str, target: str) -> Any:
    """Import `source` as functions-framework does (named after its file, its folder on sys.path)
    and build the app of its function `target`, which one of this module's decorators marked."""
    path = os.path.realpath(source)
    if not os.path.exists(path):
        raise FunctionLoadError(
            f"ripple_server: {source} does not exist: pass --source FILE (the function's file)."
        )
    folder, filename = os.path.split(path)
    name = os.path.splitext(filename)[0]
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[folder])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.append(folder)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    function = getattr(module, target, None)
    signature_type = getattr(function, SIGNATURE_ATTRIBUTE, None)
    if signature_type is None:
        raise FunctionLoadError(
            f"ripple_server: {source} has no function {target!r} decorated with @ripple_server.aio.http or "
            "@ripple_server.aio.cloud_event: decorate it (or import functions_framework there to serve "
            "a functions-framework function)."
        )
    app = create_app(function, signature_type)
    wrap_app = getattr(module, "wrap_app", None)
    return wrap_app(app) if wrap_app is not None else app
