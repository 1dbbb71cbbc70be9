"""Create the dead_letters table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("tenant", sa.Text),
        sa.Column("time", sa.Text),
        sa.Column("datacontenttype", sa.Text),
        sa.Column("data", sa.LargeBinary),
        sa.Column("extensions", JSONB, nullable=False),
        sa.Column("error_dest", sa.Text, nullable=False),
        sa.Column("error_code", sa.Text),
        sa.Column("error_data", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        # A redelivered dead letter is a no-op.
        sa.UniqueConstraint("source", "id", "error_dest", name="dead_letters_event_dest"),
    )
    op.create_index(
        "dead_letters_pending",
        "dead_letters",
        ["received_at"],
        postgresql_where=sa.text("replayed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
