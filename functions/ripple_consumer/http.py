"""HTTP details of the function: problem+json answers and the probe/metrics routes."""

from __future__ import annotations

import json

import flask
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def abort_with_problem(status: int, slug: str, title: str, detail: str) -> None:
    """Stop the request with an RFC 9457 problem (never a stack trace)."""
    body = {"type": f"https://ripple.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    flask.abort(flask.Response(json.dumps(body), status=status, mimetype="application/problem+json"))


def add_routes(app: flask.Flask) -> None:
    """GET /healthz, /readyz and /metrics next to functions-framework's POST-only routes."""
    app.add_url_rule("/healthz", "healthz", lambda: ("ok", 200), methods=["GET"])
    # Readiness stays cheap: an unreachable database is signalled per event with 503, which the
    # dispatcher retries, rather than by taking the pod out of rotation.
    app.add_url_rule("/readyz", "readyz", lambda: ("ok", 200), methods=["GET"])
    app.add_url_rule(
        "/metrics",
        "metrics",
        lambda: (generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}),
        methods=["GET"],
    )
