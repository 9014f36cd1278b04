"""When each source version was read, so a slow pull and a webhook never move the id map back.

A pull's page and a webhook's re-read of the same record can finish in either order. The id map
keeps the version that was read last (`id_map.seen_at`), and a pull's page remembers when it was
read (`pages.read_at`), so a page read before a webhook's re-read cannot overwrite it.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("id_map", sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("pages", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("pages", "read_at")
    op.drop_column("id_map", "seen_at")
