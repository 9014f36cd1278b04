"""The shipped config/ loads, and its approval flows notify as the product promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.config.loader import Config, load_config
from sync_pipeline.records import Record
from sync_pipeline.stages.dedupe import dedupe
from sync_pipeline.stages.plan import plan_writes
from sync_pipeline.stages.rules import filter_batch
from sync_pipeline.stages.transform import transform

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
SANDBOX_ENV = {
    name: f"value-of-{name}"
    for name in (
        "SANDBOX_OA_APPID",
        "SANDBOX_OA_SECRET",
        "SANDBOX_OA_SPK",
        "SANDBOX_OA_OFS_SYSCODE",
        "SANDBOX_WECOM_CORPID",
        "SANDBOX_WECOM_CORPSECRET",
        "SANDBOX_DINGTALK_APP_KEY",
        "SANDBOX_DINGTALK_APP_SECRET",
        "SANDBOX_DINGTALK_AGENT_ID",
        "SANDBOX_FEISHU_APP_ID",
        "SANDBOX_FEISHU_APP_SECRET",
        "SANDBOX_FEISHU_VERIFICATION_TOKEN",  # also the approval center's callback token
        "SANDBOX_FEISHU_ENCRYPT_KEY",  # and its key
        "SANDBOX_AGORA_APP_ID",
        "SANDBOX_AGORA_APP_CERTIFICATE",
        "SANDBOX_AGORA_ORG_NAME",
        "SANDBOX_AGORA_APP_NAME",
        "SANDBOX_SLACK_BOT_TOKEN",
        "SANDBOX_SLACK_APP_TOKEN",
    )
}
IM_VENDORS = [Vendor.WECOM, Vendor.DINGTALK, Vendor.FEISHU, Vendor.AGORA]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(CONFIG_DIR, SANDBOX_ENV)


class Directory:
    """OA user n is "<vendor>-n" on every IM, except OA user 199, who has no IM account."""

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        return None if user_id == "199" else f"{to_system}-{user_id}"

    def employee_no(self, system: str, user_id: str) -> str | None:
        return f"E{int(user_id):05d}"


def approval(source_id: str, status: str, approvers: list[str], applicant: str = "105") -> Record:
    payload: dict[str, Any] = {
        "id": source_id,
        "title": f"Leave {source_id}",
        "template": "leave",
        "status": status,
        "applicant": applicant,
        "current_approvers": approvers,
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-02T09:30:00Z",
        "form": {"days": 2},
        "url": f"http://127.0.0.1:18601/r/{source_id}",
    }
    return Record(source_id, payload["updated_at"], payload["updated_at"], payload)


def test_the_sandbox_connectors_load_with_every_secret_from_the_environment(config) -> None:
    shipped = sorted(["oa", "slack", *IM_VENDORS])
    assert sorted(config.connectors) == [f"sandbox_{v}" for v in shipped]
    for connector in config.connectors.values():
        assert connector.name == f"sandbox_{connector.vendor}"
        assert all(
            s.reveal().startswith("value-of-SANDBOX_") for s in connector.credentials.values()
        )


@pytest.mark.parametrize("vendor", IM_VENDORS)
def test_there_is_one_enabled_approvals_flow_per_im_from_the_oa(config, vendor) -> None:
    flow = config.flows[f"approvals_to_{vendor}"]

    assert flow.enabled
    assert config.connectors[flow.source.connector].vendor is Vendor.OA
    assert config.connectors[flow.target.connector].vendor is vendor


def test_the_slack_approvals_flow_ships_disabled_so_the_demo_stays_as_it_is(config) -> None:
    flow = config.flows["approvals_to_slack"]

    assert not flow.enabled
    assert config.connectors[flow.target.connector].vendor is Vendor.SLACK


@pytest.mark.parametrize("vendor", IM_VENDORS)
def test_approvals_notify_approvers_when_pending_and_applicants_when_decided(
    config, vendor
) -> None:
    flow = config.flows[f"approvals_to_{vendor}"]
    batch = [
        approval("1", "pending", ["101", "102"]),
        approval("2", "approved", []),
        approval("3", "rejected", []),
        approval("4", "revoked", []),
        approval("5", "pending", ["199"]),
    ]

    mapped = transform(batch, flow.mapping, Directory())
    kept = filter_batch(mapped.records, flow.rules, {}).kept
    fresh = dedupe(kept, {}, flow.dedupe_key).fresh
    writes = plan_writes(flow.name, fresh, flow.notify, {}, target=f"{flow.target.connector}/x")

    assert [(w.source_id, w.notification.to) for w in writes] == [
        ("1", f"{vendor}-101"),
        ("1", f"{vendor}-102"),
        ("2", f"{vendor}-105"),
        ("3", f"{vendor}-105"),
    ]
    assert writes[2].notification.content["text"] == 'Your request "Leave 2": Approved.'
    assert [(r.source_id, reason) for r, reason in mapped.dead] == [
        ("5", f"no {vendor} user for OA user 199 (employee E00199)")
    ]
