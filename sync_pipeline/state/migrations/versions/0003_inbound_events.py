"""Event-driven sync: inbound webhook events, refused deliveries, and what each effect was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("vendor", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("connector", "event_id", name="inbound_events_once"),
        sa.CheckConstraint(
            "status IN ('queued', 'done', 'ignored', 'failed')", name="inbound_events_status_known"
        ),
    )
    op.create_index("inbound_events_by_status", "inbound_events", ["status", "received_at"])
    op.create_table(
        "webhook_refusals",
        sa.Column("connector", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    )
    op.add_column("effects", sa.Column("source_id", sa.Text, nullable=True))
    op.add_column("effects", sa.Column("kind", sa.Text, nullable=True))
    op.add_column("effects", sa.Column("recipient", sa.Text, nullable=True))
    op.add_column("effects", sa.Column("detail", JSONB, nullable=True))
    op.create_index("effects_by_source", "effects", ["flow", "source_id"])


def downgrade() -> None:
    op.drop_index("effects_by_source", table_name="effects")
    for column in ("detail", "recipient", "kind", "source_id"):
        op.drop_column("effects", column)
    op.drop_table("webhook_refusals")
    op.drop_index("inbound_events_by_status", table_name="inbound_events")
    op.drop_table("inbound_events")
