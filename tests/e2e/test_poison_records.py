"""Issue 9's reproductions as an operator makes them: an approval titled "a\\u0000b" filed
through the sandbox's control API, then `syncctl run approvals_to_dingtalk --wait` with a real
worker; and what `syncctl run` says when PostgreSQL refuses a write (point 9).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.state import runs
from sync_pipeline.state.db import engine_for
from tests.conftest import next_second, syncctl
from tests.e2e.spine import SEED
from tests.events.approval_scene import entries

pytestmark = pytest.mark.slow

FLOW = "approvals_to_dingtalk"


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxClient]:
    """A small world: these tests are about one approval, not about volume."""
    with seeded_sandbox(tmp_path / "sandbox", seed=SEED, approvals=10, checkin_days=1) as client:
        yield client


def run_flow(env: dict[str, str]) -> tuple[int, str]:
    result = syncctl("run", FLOW, "--wait", "--timeout", "120", env=env, timeout=180)
    return result.returncode, result.stdout + result.stderr


def latest_run(env: dict[str, str]) -> runs.Run:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        run = runs.latest(conn, FLOW)
    assert run is not None
    return run


def test_given_an_approval_titled_a_nul_b_then_syncctl_run_succeeds_and_sends_its_card(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    tag = uuid.uuid4().hex[:8]
    sandbox.create_approval(applicant="E00010", approvers=["E00011"], title=f"a\x00b {tag}")
    next_second()

    code, output = run_flow(sandbox_env)

    assert code == 0, output
    assert len(entries(sandbox, "dingtalk", f"a\ufffdb {tag}")) == 1
    again, output = run_flow(sandbox_env)
    assert again == 0, output
    assert latest_run(sandbox_env).cursor_after is not None


def test_given_postgresql_refuses_a_page_then_syncctl_run_says_why_without_sql_or_payload(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    marker = f"private-{uuid.uuid4().hex[:8]}"
    with engine_for(sandbox_env["DATABASE_URL"]).begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE pages ADD CONSTRAINT refused_in_test"
            f" CHECK (records::text NOT LIKE '%%{marker}%%')"
        )
    sandbox.create_approval(applicant="E00010", approvers=["E00011"], title=f"Salary {marker}")
    next_second()

    code, output = run_flow(sandbox_env)

    assert code == 1, output
    assert "check violation on table pages, constraint refused_in_test" in output
    assert marker not in output
    assert not [word for word in ("INSERT", "[SQL", "parameters", "%(") if word in output]
    assert latest_run(sandbox_env).status is runs.RunStatus.FAILED
