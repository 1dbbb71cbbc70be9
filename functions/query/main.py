"""Entry point of the query function: `functions-framework --target handle --source main.py`."""

from __future__ import annotations

import logging
import sys

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from ripple_auth import Problem
from ripple_query.app import Query
from ripple_query.config import ConfigError, load_config

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# Read configuration at import so a wrong setting stops the process with one clear message.
try:
    _query = Query(load_config())
except ConfigError as error:
    sys.exit(f"query: {error}")


@functions_framework.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> flask.Response:
    status = error.code or 500
    slugs = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}
    slug = slugs.get(status, "internal-error")
    return Problem(status, slug, error.description or "the request failed").response()


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    return _query.handle(request)
