"""Entry point of the gateway function: `python -m ripple_server --target=handle --source=main.py`.

An asynchronous HTTP function (ripple_server.aio: functions_framework.aio's Starlette app without
importing Flask, issue 22's cold start) served by uvicorn (uvloop, httptools) in one process per
instance, instead of Flask, because a request here is a short parse and a wait for Kafka, and
Flask's per-request cost was most of the gateway's CPU (loadtest/gateway/profiles/). Every path
and every error is answered by ripple_gateway.app.

`POST /`, the one path that carries load, goes from the ASGI server straight to the gateway:
the framework's Starlette app (middlewares, the router) was ~15 % of a single event's CPU
(loadtest/gateway/profiles/issue22/), and the gateway answers every error of that path itself.
Every other path takes the framework's app (`wrap_app`, which ripple_server calls with it).
"""

from __future__ import annotations

from typing import Any

from ripple_server import aio
from starlette.requests import Request
from starlette.responses import Response

from ripple_gateway.app import gateway
from ripple_settings import or_exit

_gateway = or_exit("gateway", gateway)


@aio.http
async def handle(request: Request) -> Response:
    return await _gateway.handle(request)


# The framework's app answers GET /robots.txt and /favicon.ico with its own plain-text 404; the
# gateway answers every path, with a problem for those as for any other unknown path.
OWN_NOT_FOUND = {"/robots.txt", "/favicon.ico"}


class _PostEvents:
    """ASGI app: POST / (and the two paths above) to the gateway, everything else to the framework's app."""

    def __init__(self, framework_app: Any) -> None:
        self.framework_app = framework_app

    def __getattr__(self, name: str) -> Any:
        # Whoever configures the framework's Starlette app (routes, handlers) still reaches it.
        return getattr(self.framework_app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (
            (scope["path"] == "/" and scope["method"] == "POST")
            or (scope["path"] in OWN_NOT_FOUND and scope["method"] in ("GET", "HEAD"))
        ):
            response = await _gateway.handle(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.framework_app(scope, receive, send)


def wrap_app(framework_app: Any) -> _PostEvents:
    """What ripple_server serves: the framework's app of `handle`, with POST / in front of it."""
    return _PostEvents(framework_app)
