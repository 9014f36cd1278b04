"""A dead letter the operator drops is kept, marked discarded with who and why
(`syncctl dlq discard`); `resolved_at` says when, as for a letter a replay closed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("discarded_by", sa.Text, nullable=True))
    op.add_column("dead_letters", sa.Column("discard_reason", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letters", "discard_reason")
    op.drop_column("dead_letters", "discarded_by")
