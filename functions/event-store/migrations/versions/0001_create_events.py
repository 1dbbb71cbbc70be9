"""Create the events table: one row per CloudEvent, unique on (source, id).

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
        "events",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("tenant", sa.Text),
        sa.Column("time", sa.DateTime(timezone=True)),
        sa.Column("data", JSONB),
        sa.Column("extensions", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("source", "id", name="events_pkey"),
    )
    # The queries an operator runs: by type or tenant over time.
    op.create_index("events_type_time", "events", ["type", "time"])
    op.create_index("events_tenant_time", "events", ["tenant", "time"])
    op.create_index("events_subject", "events", ["subject"])


def downgrade() -> None:
    op.drop_table("events")
