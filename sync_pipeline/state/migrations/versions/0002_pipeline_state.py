"""Pipeline state: pulled pages, the user directory, monthly quota usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")
    op.add_column("runs", sa.Column("lock_token", sa.Text, nullable=True))
    op.add_column(
        "runs", sa.Column("pull_done", sa.Boolean, nullable=False, server_default="false")
    )
    op.add_column("id_map", sa.Column("payload", JSONB, nullable=True))
    op.create_table(
        "pages",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("cursor_value", sa.Text, nullable=True),
        sa.Column("next_token", sa.Text, nullable=True),
        sa.Column("records", JSONB, nullable=False),
        sa.Column("plan", JSONB, nullable=True),
        sa.Column("status", sa.Text, nullable=False, server_default="pulled"),
        sa.Column("written", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dead_lettered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("run_id", "seq", name="pages_run_seq"),
        sa.CheckConstraint(
            "status IN ('pulled', 'planned', 'done', 'committed')", name="pages_status_known"
        ),
    )
    op.create_table(
        "directory_users",
        sa.Column("system", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("employee_no", sa.Text, nullable=True),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("mobile", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    )
    op.create_index("directory_by_employee_no", "directory_users", ["system", "employee_no"])
    op.create_index("directory_by_email", "directory_users", ["system", "email"])
    op.create_index("directory_by_mobile", "directory_users", ["system", "mobile"])
    op.create_table(
        "quota_usage",
        sa.Column("vendor", sa.Text, primary_key=True),
        sa.Column("app", sa.Text, primary_key=True),
        sa.Column("api", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("quota_usage")
    op.drop_table("directory_users")
    op.drop_table("pages")
    op.drop_column("id_map", "payload")
    op.drop_column("runs", "pull_done")
    op.drop_column("runs", "lock_token")
