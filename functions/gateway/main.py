"""Entry point of the gateway function: `functions-framework --target handle --source main.py`."""

from __future__ import annotations

import sys

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from ripple_gateway.app import gateway, http_exception_problem
from ripple_gateway.config import ConfigError

# Read configuration at import so a wrong setting stops the process with one clear message.
try:
    _gateway = gateway()
except ConfigError as error:
    sys.exit(f"gateway: {error}")


@functions_framework.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> flask.Response:
    return http_exception_problem(error)


@functions_framework.errorhandler(500)
def _internal_error(error: Exception) -> flask.Response:
    # Replaces functions-framework's crash handler, which echoes the exception text.
    return http_exception_problem(HTTPException(description="internal error", response=None))


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    return _gateway.handle(request)
