"""Full resyncs (`syncctl resync`): each with its own checkpoint (the next page's token) and
counts, a lease while a worker is at it, beside the flow's cursor, which it never moves. Flow
controls (`syncctl flow pause|resume`), and who made a run by hand (`syncctl cursor set`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = ("pages", "read", "written", "skipped", "dead_lettered")
    op.create_table(
        "resyncs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("since", sa.Text, nullable=True),
        sa.Column("until", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("page_token", sa.Text, nullable=True),
        sa.Column("position", sa.Text, nullable=True),
        sa.Column("first_position", sa.Text, nullable=True),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in counters),
        sa.Column("would_create", sa.Integer, nullable=False, server_default="0"),
        sa.Column("would_update", sa.Integer, nullable=False, server_default="0"),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'stopped')", name="resyncs_status_known"
        ),
    )
    op.create_index("resyncs_by_flow", "resyncs", ["flow", "id"])
    op.create_table(
        "flow_controls",
        sa.Column("flow", sa.Text, primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.add_column("runs", sa.Column("by", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "by")
    op.drop_table("flow_controls")
    op.drop_index("resyncs_by_flow", table_name="resyncs")
    op.drop_table("resyncs")
