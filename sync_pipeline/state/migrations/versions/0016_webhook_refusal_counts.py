"""Webhook refusals per connector, reason and 10-second bucket: what the `webhook_refusals`
alert counts inside its window (pipeline/alerts.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_refusal_counts",
        sa.Column("connector", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("webhook_refusal_counts_by_bucket", "webhook_refusal_counts", ["bucket"])


def downgrade() -> None:
    op.drop_table("webhook_refusal_counts")
