"""Inbound events are claimed with a lease (issue 11, point 4): the task handling a row names
itself in `owner` and holds it until `lease_until`, both committed before any vendor call, so
no transaction or row lock is held while the vendors answer. An expired lease is taken over.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_events", sa.Column("owner", sa.Text, nullable=True))
    op.add_column(
        "inbound_events", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("inbound_events", "lease_until")
    op.drop_column("inbound_events", "owner")
