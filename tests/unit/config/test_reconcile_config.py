"""A flow's `reconcile:` key (pipeline/reconcile.py): accepted only where the target can be read
back, nightly by default there, and scheduled by Beat for enabled flows."""

from __future__ import annotations

import dataclasses

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.config.flow import NIGHTLY, ReconcileConfig
from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.registry import capabilities
from sync_pipeline.pipeline.reconcile import refusal
from tests.unit.config.test_examples import CONFIG_DIR
from workers.beat import reconcile_schedule

CENTER = "approvals_to_feishu_approval_center"


def test_given_reconcile_on_a_target_that_cannot_be_read_back_it_is_refused(tree) -> None:
    tree.flow("x", reconcile={"schedule": "0 3 * * *"})

    assert dict(tree.error().problems)["reconcile"] == (
        "the wecom connector cannot read back stream messages: WeCom documents no read of an"
        " app message it sent (a msgid can only be recalled), so it cannot be reconciled"
        " (streams it reads back: none); remove the key"
    )


@pytest.mark.parametrize("vendor", list(Vendor))
def test_every_target_stream_that_cannot_be_read_back_says_why(vendor: Vendor) -> None:
    streams = capabilities(vendor)

    silent = [n for n, c in streams.items() if c.write and not (c.reads_back or c.no_read_back)]

    assert silent == []


def test_reconcile_of_a_shipped_flow_that_cannot_be_read_back_names_the_vendors_read() -> None:
    config = load_config(CONFIG_DIR, environment=False)

    why = refusal(config, config.flows["approvals_to_feishu"])

    assert why is not None
    assert why.startswith("approvals_to_feishu cannot be reconciled: the feishu")
    assert "GET /im/v1/messages/:message_id" in why
    assert "\n" not in why


def test_given_a_bad_reconcile_schedule_it_is_refused(tree) -> None:
    tree.flow("x", reconcile={"schedule": "every night"})

    assert "reconcile.schedule" in dict(tree.error().problems)


def test_given_the_shipped_approval_center_flow_it_is_reconciled_nightly_without_repair() -> None:
    config = load_config(CONFIG_DIR, environment=False)

    assert config.reconcile_of(config.flows[CENTER]) == ReconcileConfig(NIGHTLY, repair=False)
    assert config.reconcile_of(config.flows["approvals_to_wecom"]) is None


def test_beat_schedules_a_reconcile_only_for_enabled_flows_whose_target_reads_back() -> None:
    config = load_config(CONFIG_DIR, environment=False)
    assert reconcile_schedule(config) == {}  # the approval center flow ships disabled
    enabled = dataclasses.replace(config.flows[CENTER], enabled=True)
    config = dataclasses.replace(config, flows={**config.flows, CENTER: enabled})

    entries = reconcile_schedule(config)

    assert list(entries) == [f"reconcile {CENTER}"]
    assert entries[f"reconcile {CENTER}"]["args"] == (None, CENTER)
    assert entries[f"reconcile {CENTER}"]["options"] == {"queue": "admin"}
