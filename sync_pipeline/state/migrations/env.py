"""Alembic environment: always run on the connection `syncctl migrate` hands over.

The caller holds a transaction-scoped advisory lock on that connection, so two processes that
migrate at once run one after the other, and the second finds nothing left to do.
"""

from __future__ import annotations

from alembic import context

from sync_pipeline.state.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `syncctl migrate`, which provides the connection")

context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
