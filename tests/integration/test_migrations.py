"""`syncctl migrate`: versioned, idempotent, safe when two processes run it at once."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import alembic_config, head_revision, migrate
from sync_pipeline.state.schema import metadata
from tests.conftest import ROOT

STATE_TABLES = {"flow_cursors", "id_map", "effects", "runs", "dead_letters"}


def _tables(database_url: str) -> set[str]:
    return set(sa.inspect(engine_for(database_url)).get_table_names())


def test_first_migrate_creates_the_state_tables(database_url: str) -> None:
    result = migrate(database_url)

    assert result.before is None
    assert result.after == head_revision()
    assert result.applied[-1] == head_revision()
    assert STATE_TABLES <= _tables(database_url)


def _catalog(database_url: str) -> list[tuple[str, ...]]:
    """Every column and index of our schema, as PostgreSQL describes them."""
    with engine_for(database_url).connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT table_name, column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " ORDER BY 1, 2"
            )
        )
        indexes = conn.execute(
            sa.text(
                "SELECT tablename, indexname, indexdef, '', '' FROM pg_indexes"
                " WHERE schemaname = current_schema() ORDER BY 1, 2"
            )
        )
        return [tuple(map(str, row)) for row in [*columns, *indexes]]


def test_second_migrate_changes_nothing(database_url: str) -> None:
    migrate(database_url)
    before = _catalog(database_url)

    again = migrate(database_url)

    assert not again.changed
    assert again.before == again.after == head_revision()
    assert _catalog(database_url) == before


def test_migrations_build_exactly_the_declared_schema(database_url: str) -> None:
    migrate(database_url)

    with engine_for(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)

    assert diff == []


def test_two_processes_migrating_at_once_both_succeed_once(database_url: str) -> None:
    script = (
        "import sys; from sync_pipeline.state.migrate import migrate; "
        "r = migrate(sys.argv[1]); print(len(r.applied))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]

    assert [p.returncode for p in procs] == [0, 0]
    revisions = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    assert sorted(outputs) == ["0", str(revisions)]
    assert STATE_TABLES <= _tables(database_url)


def test_the_upgrade_to_one_running_reconcile_a_flow_closes_the_older_running_ones(
    database_url: str,
) -> None:
    from alembic import command

    config = alembic_config()
    with engine_for(database_url).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0014")
        for by in ("first", "second"):
            conn.execute(
                sa.text("INSERT INTO reconciles (flow, requested_by) VALUES ('f', :by)"), {"by": by}
            )

    migrate(database_url)

    with engine_for(database_url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT requested_by, status FROM reconciles ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [("first", "failed"), ("second", "running")]
