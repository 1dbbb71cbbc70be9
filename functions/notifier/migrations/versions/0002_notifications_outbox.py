"""The notifications table becomes an outbox: state pending -> sent.

Until now a row was inserted in the transaction that sent the mail, so every existing row is a
mail the SMTP server accepted: it becomes `sent`, its `sent_at` kept. New rows are recorded
`pending` before the send and get `sent_at` when the acceptance is recorded (notifier/notify.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("state", sa.Text, nullable=False, server_default="sent"))
    op.alter_column("notifications", "state", server_default="pending")
    op.add_column(
        "notifications",
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute("UPDATE notifications SET recorded_at = sent_at")
    op.add_column("notifications", sa.Column("attempts", sa.Integer, nullable=False, server_default="1"))
    op.alter_column("notifications", "attempts", server_default="0")
    op.add_column("notifications", sa.Column("event_time", sa.DateTime(timezone=True)))
    op.alter_column("notifications", "sent_at", nullable=True, server_default=None)
    op.create_check_constraint("notifications_state", "notifications", "state IN ('pending', 'sent')")
    op.create_check_constraint(
        "notifications_sent_at", "notifications", "state <> 'sent' OR sent_at IS NOT NULL"
    )


def downgrade() -> None:
    # A pending row may never have been mailed: the old table (a row = a mail sent) cannot hold it.
    op.execute("DELETE FROM notifications WHERE state = 'pending'")
    op.drop_constraint("notifications_sent_at", "notifications", type_="check")
    op.drop_constraint("notifications_state", "notifications", type_="check")
    op.alter_column("notifications", "sent_at", nullable=False, server_default=sa.func.now())
    op.drop_column("notifications", "event_time")
    op.drop_column("notifications", "attempts")
    op.drop_column("notifications", "recorded_at")
    op.drop_column("notifications", "state")
