"""Entry point of the gateway function: `functions-framework --target handle --source main.py`.

An asynchronous HTTP function (functions_framework.aio): functions-framework serves it with
gunicorn and uvicorn's worker (uvloop, httptools) instead of Flask, because a request here is a
short parse and a wait for Kafka, and Flask's per-request cost was most of the gateway's CPU
(loadtest/gateway/profiles/). Every path and every error is answered by ripple_gateway.app.
"""

from __future__ import annotations

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
