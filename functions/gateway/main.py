"""Entry point of the gateway function: `python -m ripple_server --target=handle --source=main.py`.

An asynchronous HTTP function (functions_framework.aio): functions-framework builds its Starlette
app and ripple_server serves it with uvicorn (uvloop, httptools) in one process per instance,
instead of Flask, because a request here is a short parse and a wait for Kafka, and Flask's
per-request cost was most of the gateway's CPU (loadtest/gateway/profiles/). Every path and every
error is answered by ripple_gateway.app.

`POST /`, the one path that carries load, goes from the ASGI server straight to the gateway:
functions-framework's Starlette app (five middlewares, the router, an execution id per request)
was ~15 % of a single event's CPU (loadtest/gateway/profiles/issue22/), and the gateway answers
every error of that path itself. Every other path, and POST / too when functions-framework's
execution-id logging (LOG_EXECUTION_ID) is on, takes the framework's app as before.
"""

from __future__ import annotations

from typing import Any

import functions_framework.aio
from functions_framework import aio as framework_aio
from starlette.requests import Request
from starlette.responses import Response

from ripple_gateway.app import gateway
from ripple_settings import or_exit

_gateway = or_exit("gateway", gateway)


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    return await _gateway.handle(request)


# functions-framework routes GET /robots.txt and /favicon.ico to its own plain-text 404 (its app
# is built after this module is imported, from this name); the gateway answers every path, with
# a problem for those as for any other unknown path.
framework_aio._handle_not_found = handle


class _PostEvents:
    """ASGI app: POST / to the gateway, everything else to functions-framework's app."""

    def __init__(self, framework_app: Any) -> None:
        self.framework_app = framework_app

    def __getattr__(self, name: str) -> Any:
        # Whoever configures the framework's Starlette app (routes, handlers) still reaches it.
        return getattr(self.framework_app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] == "POST":
            response = await _gateway.handle(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.framework_app(scope, receive, send)


# The framework's own builder (also when this module is imported a second time).
_create_app = getattr(
    framework_aio._create_asgi_app_with_function,
    "__wrapped__",
    framework_aio._create_asgi_app_with_function,
)


def _create_app_with_post_events(function: Any, signature_type: str, enable_id_logging: bool) -> Any:
    # functions-framework builds its app after importing this module, from this module-level name;
    # only the gateway's own function gets the shortcut (other apps built in the same process,
    # e.g. by tests, stay the framework's).
    app = _create_app(function, signature_type, enable_id_logging)
    return _PostEvents(app) if function is handle and not enable_id_logging else app


_create_app_with_post_events.__wrapped__ = _create_app  # type: ignore[attr-defined]
framework_aio._create_asgi_app_with_function = _create_app_with_post_events
