"""Reconciliations: one row per `syncctl reconcile` (or scheduled one), its drift and repairs.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciles",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("repair", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("checked", sa.Integer, nullable=False, server_default="0"),
        sa.Column("listed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("missing", sa.Integer, nullable=False, server_default="0"),
        sa.Column("extra", sa.Integer, nullable=False, server_default="0"),
        sa.Column("different", sa.Integer, nullable=False, server_default="0"),
        sa.Column("repaired", sa.Integer, nullable=False, server_default="0"),
        sa.Column("drift", JSONB, nullable=False, server_default="[]"),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name="reconciles_status_known"
        ),
    )
    op.create_index("reconciles_by_flow", "reconciles", ["flow", "id"])


def downgrade() -> None:
    op.drop_index("reconciles_by_flow", table_name="reconciles")
    op.drop_table("reconciles")
