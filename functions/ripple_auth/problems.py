"""RFC 9457 problem details: every error a ripple HTTP function answers is one of these."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Response

PROBLEM_BASE = "https://ripple.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# slug -> title. Stable: clients and tests key on the type URI, so a slug is never renamed.
TITLES = {
    "malformed-event": "The request is not a valid CloudEvent",
    "unknown-event-type": "The event type is not in the catalog",
    "schema-violation": "The event data does not match the schema of its type",
    "invalid-token": "The bearer token is missing or invalid",
    "forbidden": "The token does not allow this",
    "payload-too-large": "The request is too large",
    "unsupported-media-type": "The content type is not supported",
    "method-not-allowed": "The method is not allowed on this path",
    "not-found": "There is nothing at this path",
    "invalid-query": "The query parameters are not valid",
    "kafka-unavailable": "The event store is unavailable; retry later",
    "database-unavailable": "The database is unavailable; retry later",
    "rate-limited": "Too many requests; retry later",
    "internal-error": "The service failed unexpectedly",
}


class Problem(Exception):
    """Raised anywhere while handling a request; turned into the response by the handler."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        # Short machine reason for metrics/logs (e.g. the auth failure kind); not sent to clients.
        self.reason = reason or slug

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": TITLES.get(self.slug, self.slug),
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> Response:
        """The problem as a Flask response (query); the gateway builds its own Starlette one."""
        # Imported here: the gateway uses Problem without Flask, which costs ~150 ms of a cold start.
        from flask import Response

        return Response(
            json.dumps(self.body()), status=self.status, headers=self.headers, mimetype=PROBLEM_MEDIA_TYPE
        )
