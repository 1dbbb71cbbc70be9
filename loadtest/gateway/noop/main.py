"""A do-nothing asynchronous HTTP function: the ceiling of the gateway's server stack.

Served like the gateway (ripple_server: uvicorn, one process per instance, as many instances on
one port as the gateway gets) by `python -m loadtest.gateway.run --targets noop`: 202 and an
empty body, without reading the request. The gap between its req/s and the gateway's is the
gateway's own work.
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    return Response(b"", status_code=202)
