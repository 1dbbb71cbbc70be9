"""Once per flagged order: an outbox row in notifications, the e-mail, then the row marked sent.

1. The row of the event's (source, id) is recorded `pending`, with the mail's Message-ID (derived
   from (source, id): notifier/mail.py), and committed before anything is sent. A delivery that
   finds the row `sent` stops there: a redelivery of a sent notification sends nothing.
2. In a second transaction the row is locked (SELECT ... FOR UPDATE: a concurrent duplicate
   delivery waits here, then finds it sent), the mail is sent with that Message-ID and the row is
   marked `sent` with the acceptance time, and committed.

The window between the SMTP server's acceptance and that commit (PostgreSQL going away, as in
issue 19) is closed in-process: the acceptance is remembered (Unrecorded) before the commit is
tried, and until it is recorded a background thread keeps trying, while a redelivery that reaches
this process records it instead of sending again. Only if the process dies inside that window, or
a redelivery reaches another instance before the background thread got PostgreSQL back, is a
pending row sent again: the same message with the same Message-ID, which mail systems and the
fraud desk's client recognise as one mail. A failed send leaves the row `pending` (it may or may
not have reached the server: a timeout after DATA is both), so the retry resends the same message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Connection, Engine, bindparam, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from .config import Config
from .mail import compose, message_id, order_of
from .metrics import ALERT_TO_MAIL
from .schema import PENDING, SENT, notifications
from .smtp import send

log = logging.getLogger("notifier")
Key = tuple[str, str]  # the event's (source, id)

# Outcomes of notify_once (the ripple_notifier_events outcome label).
MAILED = "sent"  # first send of this notification
RESENT = "resent"  # a pending one sent again, same Message-ID
RECORDED = "recorded"  # this process had sent it; its acceptance is now recorded, nothing sent
DUPLICATE = "duplicate"  # already sent: nothing to do


def event_time(event: AnyCloudEvent) -> datetime | None:
    """The event's `time` attribute as an aware datetime, None when absent or unreadable."""
    value = event.get("time")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# The statements, built once with bound parameters so that SQLAlchemy compiles each once (its
# compiled cache): built per call, the two transactions cost 1.6 ms of CPU instead of 0.4 ms, most
# of it compiling the upsert (issue 19, microbenchmarks in loadtest/broker/profiles/).
#
# The outbox row, committed before the send. ON CONFLICT counts the attempt while the row is
# pending and returns nothing once it is sent. Written as SQL because SQLAlchemy 2.0 cannot cache
# insert().on_conflict_do_update() (it logs "no key" and compiles it at every execution);
# tests/test_notifier_notify.py checks it names the table's columns.
RECORD = text(
    "INSERT INTO notifications"
    " (source, id, tenant, order_id, recipient, message_id, state, attempts, event_time)"
    " VALUES (:source, :id, :tenant, :order_id, :recipient, :message_id, :pending, 1, :event_time)"
    " ON CONFLICT (source, id) DO UPDATE SET attempts = notifications.attempts + 1"
    " WHERE notifications.state = :pending"
    " RETURNING notifications.attempts"
).bindparams(pending=PENDING)
# The row lock of the send's transaction: a concurrent duplicate delivery waits here.
LOCK = (
    select(notifications.c.state)
    .where(notifications.c.source == bindparam("key_source"), notifications.c.id == bindparam("key_id"))
    .with_for_update()
)
MARK_SENT = (
    update(notifications)
    .where(notifications.c.source == bindparam("key_source"), notifications.c.id == bindparam("key_id"))
    .where(notifications.c.state == PENDING)
    .values(state=SENT, sent_at=bindparam("accepted_at"))
)


def mark_sent(connection: Connection, key: Key, accepted_at: datetime) -> None:
    connection.execute(MARK_SENT, {"key_source": key[0], "key_id": key[1], "accepted_at": accepted_at})


class Unrecorded:
    """Mails this process saw accepted whose `sent` it could not commit yet (PostgreSQL away).

    A daemon thread records them as soon as PostgreSQL answers again (every `interval_s`), so a
    redelivery, here or at another instance, finds them sent. Lost if the process dies: the row
    stays pending and the next delivery resends the same message.
    """

    def __init__(self, engine: Callable[[], Engine], interval_s: float = 0.5) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._accepted: dict[Key, datetime] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._accepted)

    def get(self, key: Key) -> datetime | None:
        with self._lock:
            return self._accepted.get(key)

    def add(self, key: Key, accepted_at: datetime) -> None:
        with self._lock:
            self._accepted[key] = accepted_at

    def discard(self, key: Key) -> None:
        with self._lock:
            self._accepted.pop(key, None)

    def keep_recording(self) -> None:
        """Start the background recorder unless it runs (call after a failed commit)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._record_all, name="record-sent", daemon=True)
            self._thread.start()

    def record_pending(self) -> int:
        """Commit every remembered acceptance; how many remain (PostgreSQL still away)."""
        with self._lock:
            accepted = dict(self._accepted)
        for key, accepted_at in accepted.items():
            with self._engine().begin() as connection:
                mark_sent(connection, key, accepted_at)
            self.discard(key)
        return len(self)

    def _record_all(self) -> None:
        event = threading.Event()
        while True:
            try:
                if self.record_pending() == 0:
                    break
            except SQLAlchemyError as error:
                log.info("acceptances not recorded yet (%d): %s", len(self), str(error).splitlines()[0])
            event.wait(self._interval_s)
        with self._lock:
            self._thread = None
            if self._accepted:  # added after the last pass: go on
                self._thread = threading.Thread(target=self._record_all, name="record-sent", daemon=True)
                self._thread.start()


@dataclass(frozen=True)
class Result:
    outcome: str  # MAILED, RESENT, RECORDED or DUPLICATE
    message_id: str


def notify_once(engine: Engine, event: AnyCloudEvent, config: Config, unrecorded: Unrecorded) -> Result:
    """Send the flagged order's mail unless it was sent; SQLAlchemyError / SMTP errors propagate."""
    order = order_of(event)
    key: Key = (event["source"], event["id"])
    mail_id = message_id(event)
    accepted_at = unrecorded.get(key)
    if accepted_at is not None:
        # Sent by this process; only its commit was lost. Record it, send nothing.
        with engine.begin() as connection:
            mark_sent(connection, key, accepted_at)
        unrecorded.discard(key)
        return Result(RECORDED, mail_id)
    flagged_at = event_time(event)
    # One pooled connection (one checkout, one liveness ping) for both transactions.
    connection = engine.connect()
    try:
        with connection.begin():
            attempts = connection.execute(
                RECORD,
                {
                    "source": key[0],
                    "id": key[1],
                    "tenant": event.get("tenant"),
                    "order_id": order["orderId"],
                    "recipient": config.fraud_desk,
                    "message_id": mail_id,
                    "event_time": flagged_at,
                },
            ).scalar_one_or_none()
        if attempts is None:
            return Result(DUPLICATE, mail_id)
        with connection.begin():
            state = connection.execute(LOCK, {"key_source": key[0], "key_id": key[1]}).scalar_one()
            if state == SENT:  # a concurrent delivery sent it while this one waited for the lock
                return Result(DUPLICATE, mail_id)
            send(compose(event, order, config, flagged_at or datetime.now(UTC)), config)
            accepted_at = datetime.now(UTC)
            unrecorded.add(key, accepted_at)
            if flagged_at is not None:
                ALERT_TO_MAIL.observe(max(0.0, (accepted_at - flagged_at).total_seconds()))
            mark_sent(connection, key, accepted_at)
        # Committed: nothing left to remember.
        unrecorded.discard(key)
    except SQLAlchemyError:
        if unrecorded.get(key) is not None:
            unrecorded.keep_recording()
        raise
    finally:
        connection.close()
    return Result(RESENT if attempts > 1 else MAILED, mail_id)
