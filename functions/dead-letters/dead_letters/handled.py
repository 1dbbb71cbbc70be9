"""Was a dead letter already handled downstream? Asked by replay.py before it sends anything.

A letter is dead because its subscriber failed for good *then*; by the time an operator replays
it, a redelivery (or an earlier replay run with --to) may have handled it. Replaying such a
letter is harmless for a store (idempotent on source and id) but a second e-mail for the
notifier, so replay says what it finds and skips what is done:

- notifier (and any flagged order whose subscriber cannot be told): done when its row in
  notifications is `sent`; a `pending` row is replayed (the notifier resends the same message,
  same Message-ID), as is an order with no row;
- event-store: done when events has its (source, id);
- anything else: never known to be done, replayed.

Which subscriber a letter was for comes from its destination (--to, else knativeerrordest):
a URL whose host names the function (a cluster's `http://notifier.ripple.svc...`), or one of
REPLAY_SUBSCRIBERS (`name=URL-prefix,...`, for addresses that do not name it, such as the local
stack's `http://127.0.0.1:18405`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, text

from ripple_consumer.database import ConfigError

FLAGGED = "dev.ripple.shop.order.flagged"
KNOWN = ("notifier", "event-store")


@dataclass(frozen=True)
class Handled:
    done: bool  # True: handled downstream, skipped unless --include-handled
    what: str = ""  # what was found, for the operator ("" when nothing is known)


def subscribers_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """REPLAY_SUBSCRIBERS as {URL prefix: function name}."""
    raw = env.get("REPLAY_SUBSCRIBERS", "").strip()
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, prefix = item.partition("=")
        if name not in KNOWN or not prefix.startswith(("http://", "https://")):
            raise ConfigError(
                f"REPLAY_SUBSCRIBERS item {item!r} must be name=URL with name one of {', '.join(KNOWN)}."
            )
        found[prefix.rstrip("/")] = name
    return found


def subscriber_of(url: str, subscribers: Mapping[str, str]) -> str | None:
    """The function a destination URL is, if it can be told."""
    for prefix, name in subscribers.items():
        if url.rstrip("/") == prefix or url.startswith(prefix + "/"):
            return name
    host = urlsplit(url).hostname or ""
    first_label = host.split(".", 1)[0]
    return first_label if first_label in KNOWN else None


def _table_exists(connection: Connection, table: str) -> bool:
    return connection.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}).scalar_one()


def already_handled(
    connection: Connection, letter: Any, destination: str, subscribers: Mapping[str, str]
) -> Handled:
    """What the downstream tables say about this dead letter (a dead_letters row)."""
    subscriber = subscriber_of(destination, subscribers)
    if subscriber is None and letter.type == FLAGGED:
        subscriber = "notifier"  # the flagged orders' subscriber whose repeat is an e-mail
    key = {"s": letter.source, "i": letter.id}
    if subscriber == "notifier" and _table_exists(connection, "notifications"):
        row = connection.execute(
            text("SELECT state, sent_at, attempts FROM notifications WHERE source = :s AND id = :i"),
            key,
        ).first()
        if row is None:
            return Handled(False)
        if row.state == "sent":
            return Handled(True, f"already mailed (notifications: sent at {row.sent_at:%Y-%m-%d %H:%M:%S%z})")
        return Handled(
            False,
            f"notification pending after {row.attempts} attempt(s): the notifier resends the same"
            " message (same Message-ID)",
        )
    if subscriber == "event-store" and _table_exists(connection, "events"):
        stored = connection.execute(text("SELECT 1 FROM events WHERE source = :s AND id = :i"), key).first()
        return Handled(True, "already stored (events)") if stored else Handled(False)
    return Handled(False)
