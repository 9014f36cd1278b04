"""Each effect gets a number, so an operator can name a parked one (`syncctl effects list`,
`syncctl effects settle ID`). Existing rows are numbered as the column is added.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("effects", sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False))
    op.create_unique_constraint("effects_id_key", "effects", ["id"])


def downgrade() -> None:
    op.drop_constraint("effects_id_key", "effects", type_="unique")
    op.drop_column("effects", "id")
