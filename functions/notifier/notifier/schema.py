"""The notifications table: the notifier's outbox, one row per flagged order, keyed on the
event's (source, id).

A row is recorded `pending` (with the mail's deterministic Message-ID) and committed before the
mail is sent, then marked `sent`: `pending` means "may have been sent, not known to be", so a
redelivery resends the same message (same Message-ID) and dead-letter replay can tell an operator
which orders were already mailed (notifier/notify.py).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)

PENDING = "pending"
SENT = "sent"

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("source", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("tenant", Text),
    Column("order_id", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=PENDING),
    # When the outbox row was written, how many sends were started, when the SMTP server's
    # acceptance was recorded, and the flagged event's own time (alert -> mail delay).
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("sent_at", DateTime(timezone=True)),
    Column("event_time", DateTime(timezone=True)),
    PrimaryKeyConstraint("source", "id", name="notifications_pkey"),
    CheckConstraint(f"state IN ('{PENDING}', '{SENT}')", name="notifications_state"),
    CheckConstraint(f"state <> '{SENT}' OR sent_at IS NOT NULL", name="notifications_sent_at"),
)
