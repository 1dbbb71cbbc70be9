"""Create the order_alerts table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_alerts",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("alert_id", sa.Text, nullable=False, unique=True),
        sa.Column("trigger_source", sa.Text, nullable=False),
        sa.Column("trigger_id", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("threshold", sa.Numeric, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("emitted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant", "order_id", name="order_alerts_pkey"),
    )


def downgrade() -> None:
    op.drop_table("order_alerts")
