"""Bring the schema to the newest version: Alembic over SQLAlchemy Core, under an advisory lock.

Why Alembic: versioned, reviewable migration files that run in order and record the version in
the database, so `syncctl migrate` is idempotent and every deployment converges on one schema.
Why the lock: two workers starting at once both run `migrate`; PostgreSQL's transaction-scoped
advisory lock makes the second wait, then find nothing to do. DDL is transactional in
PostgreSQL, so a failed migration leaves the schema as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sync_pipeline.errors import MigrationError, ServiceUnavailable
from sync_pipeline.settings import mask_url
from sync_pipeline.state.db import HINT, _reason, engine_for

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any 64-bit number unique to this application; "SYNCPIPE" in ASCII.
ADVISORY_LOCK_KEY = 0x53594E4350495045


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None
    applied: tuple[str, ...]  # revision ids applied by this call, oldest first

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database_url: str) -> str | None:
    with engine_for(database_url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(database_url: str, connect_timeout_s: float = 3.0) -> MigrationResult:
    """Apply every pending migration; safe to run concurrently and repeatedly."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    try:
        with engine_for(database_url, connect_timeout_s).begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            before = MigrationContext.configure(conn).get_current_revision()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            after = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise ServiceUnavailable("PostgreSQL", mask_url(database_url), _reason(exc), HINT) from None
    except sa.exc.DBAPIError as exc:
        raise MigrationError(_reason(exc)) from None
    applied = [
        rev.revision for rev in script.iterate_revisions(after, before or "base") if rev.revision
    ]
    return MigrationResult(before=before, after=after, applied=tuple(reversed(applied)))
