"""Initial state: flow cursors, id map, effect keys, runs, dead letters.

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


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "flow_cursors",
        sa.Column("flow", sa.Text, primary_key=True),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_table(
        "id_map",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("source_system", sa.Text, nullable=False),
        sa.Column("source_stream", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("target_system", sa.Text, nullable=False),
        sa.Column("target_stream", sa.Text, nullable=False),
        sa.Column("target_id", sa.Text, nullable=True),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("source_version", sa.Text, nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint(
            "source_system",
            "source_stream",
            "source_id",
            "target_system",
            "target_stream",
            name="id_map_source_target",
        ),
    )
    op.create_index("id_map_by_target", "id_map", ["target_system", "target_stream", "target_id"])
    op.create_table(
        "effects",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("target_system", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("vendor_ref", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed', 'unknown')", name="effects_status_known"
        ),
    )
    op.create_index("effects_by_flow_status", "effects", ["flow", "status"])
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False, server_default="schedule"),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("fence", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pulled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("written", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dead_lettered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cursor_before", sa.Text, nullable=True),
        sa.Column("cursor_after", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'stopped')", name="runs_status_known"
        ),
    )
    op.create_index("runs_by_flow_started", "runs", ["flow", "started_at"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column(
            "run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("record", JSONB, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("error_class", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("dead_letters_open", "dead_letters", ["flow", "resolved_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("runs")
    op.drop_table("effects")
    op.drop_table("id_map")
    op.drop_table("flow_cursors")
