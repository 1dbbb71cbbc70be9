"""Entry point of the query function: `functions-framework --target handle --source main.py`."""

from __future__ import annotations

import logging

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from ripple_auth import Problem
from ripple_query.app import Query
from ripple_query.config import load_config
from ripple_settings import or_exit

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

_query = or_exit("query", lambda: Query(load_config()))


@functions_framework.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> flask.Response:
    status = error.code or 500
    slugs = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}
    slug = slugs.get(status, "internal-error")
    return Problem(status, slug, error.description or "the request failed").response()


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    return _query.handle(request)
