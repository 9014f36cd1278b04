"""The OA webhook's and the card presses' end-to-end tests, unchanged, with the sandbox's OA
connected by YAML alone (config/examples/declarative): its change webhook verified as the
description declares it, each event re-reading the request through its `read_one`, and a press
on a WeCom, Feishu or DingTalk card deciding in the OA through its `decide:` endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_events_approvals import (  # noqa: F401 - this module's fixtures and tests
    redis_url,
    sandbox,
    test_a_dingtalk_press_approves_in_the_oa_and_updates_the_card,
    test_a_feishu_press_approves_in_the_oa_and_patches_the_card,
    test_a_new_approval_reaches_its_approver_as_a_card_through_the_oa_webhook,
    test_a_request_approved_in_the_oas_web_page_updates_the_wecom_card_to_say_who_approved,
    test_a_wecom_press_approves_in_the_oa_updates_the_card_and_tells_the_applicant,
    test_an_approval_whose_webhook_was_lost_is_caught_by_the_next_run,
    test_webhooks_out_of_order_end_in_the_oas_final_state,
    webhooks,
)
from tests.e2e.test_spine_declarative import declarative_config

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox_env(migrated: dict[str, str], sandbox, tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """As the shared fixture, with the declarative OA's config."""
    config = declarative_config(tmp_path / "config")
    return {**migrated, **sandbox.env(), "SYNC_CONFIG_DIR": str(config)}
