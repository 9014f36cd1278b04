"""The spine's tests, unchanged, with the sandbox's OA connected by YAML alone: `sandbox_oa`
is the declarative e-cology description (config/examples/declarative/ecology.yaml) instead of
the Python connector, under the shipped flows as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.test_spine import (  # noqa: F401 - collected here again, on this module's fixtures
    test_a_dead_letter_whose_cause_remains_stays_open,
    test_an_approval_updated_while_a_sync_runs_is_neither_skipped_nor_sent_twice,
    test_bad_records_become_dead_letters_and_the_rest_sync,
    test_dead_letters_replayed_once_their_causes_are_fixed_are_sent_once_and_closed,
    test_expired_tokens_and_rate_limits_are_recovered_without_loss,
    test_first_sync_sends_exactly_the_expected_messages,
    test_redis_restarted_empty_mid_run_loses_nothing_and_doubles_nothing,
    test_second_sync_without_changes_sends_nothing_and_makes_one_list_call,
    test_three_approvals_decided_in_the_oa_give_three_messages_and_three_updated_cards,
)

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "config" / "examples" / "declarative"
# A flow writing OA project progress: the declarative OA has no such stream (its write looks
# for its own reference first, which a declared endpoint cannot).
LEFT_OUT = {"feishu_project_decisions_to_oa.yaml"}


def declarative_config(into: Path) -> Path:
    """The shipped config with sandbox_oa described declaratively: every shipped flow but
    the one writing project progress."""
    into.mkdir()
    shipped = yaml.safe_load((ROOT / "config" / "connectors.yaml").read_text("utf-8"))
    example = yaml.safe_load((EXAMPLE / "connectors.yaml").read_text("utf-8"))
    shipped["sandbox_oa"] = example["sandbox_oa_declarative"]
    (into / "connectors.yaml").write_text(yaml.safe_dump(shipped, allow_unicode=True), "utf-8")
    shutil.copy(EXAMPLE / "ecology.yaml", into / "ecology.yaml")
    (into / "flows").mkdir()
    for flow in (ROOT / "config" / "flows").glob("*.yaml"):
        if flow.name not in LEFT_OUT:
            shutil.copy(flow, into / "flows" / flow.name)
    return into


@pytest.fixture
def sandbox_env(migrated: dict[str, str], sandbox, tmp_path: Path) -> dict[str, str]:
    """As the shared fixture, with the declarative OA's config."""
    config = declarative_config(tmp_path / "config")
    return {**migrated, **sandbox.env(), "SYNC_CONFIG_DIR": str(config)}
