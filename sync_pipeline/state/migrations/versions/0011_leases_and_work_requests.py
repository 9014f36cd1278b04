"""Leases on pages and on a run's pull, and the work requests made from the command line.

A step working on a page (or a pull reading a run's pages) holds a lease that its heartbeat
renews; a lease that runs out names work whose worker died, and the sweeper sends it again
(sync_pipeline/pipeline/sweeper.py). A manual run or a replay is recorded before its task is
sent, marked started by the task, and sent again by the sweeper when it never started (the
broker lost the message).

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("pages", "runs"):
        op.add_column(table, sa.Column("owner", sa.Text, nullable=True))
        op.add_column(table, sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "runs_running", "runs", ["status"], postgresql_where=sa.text("status = 'running'")
    )
    op.create_table(
        "work_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("flow", sa.Text, nullable=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("args", JSONB, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False, unique=True),
        sa.Column("status", sa.Text, nullable=False, server_default="requested"),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'started', 'turned_away')", name="work_requests_status_known"
        ),
    )
    op.create_index(
        "work_requests_waiting",
        "work_requests",
        ["sent_at"],
        postgresql_where=sa.text("status = 'requested'"),
    )


def downgrade() -> None:
    op.drop_index("work_requests_waiting", table_name="work_requests")
    op.drop_table("work_requests")
    op.drop_index("runs_running", table_name="runs")
    op.drop_column("runs", "swept_at")
    for table in ("pages", "runs"):
        op.drop_column(table, "lease_until")
        op.drop_column(table, "owner")
