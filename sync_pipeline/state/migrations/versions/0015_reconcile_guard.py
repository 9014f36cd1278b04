"""Reconciliations: one running per flow at a time, and a lease on each while a worker is at
it, so the sweeper re-drives one whose worker died (pipeline/sweeper.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reconciles", sa.Column("owner", sa.Text, nullable=True))
    op.add_column("reconciles", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    # Older rows may hold two running reconciliations of a flow (nothing refused them then):
    # all but the newest of each flow are closed as failed, saying why, before the index.
    op.execute(
        """
        UPDATE reconciles AS r
        SET status = 'failed', finished_at = now(),
            error = 'closed at upgrade: a newer reconciliation of the flow was running'
        WHERE r.status = 'running'
          AND EXISTS (
            SELECT 1 FROM reconciles AS n
            WHERE n.flow = r.flow AND n.status = 'running' AND n.id > r.id
          )
        """
    )
    op.create_index(
        "reconciles_one_running",
        "reconciles",
        ["flow"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("reconciles_one_running", table_name="reconciles")
    op.drop_column("reconciles", "lease_until")
    op.drop_column("reconciles", "owner")
