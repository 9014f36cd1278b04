"""One suite over every connector: what its class declares in `STREAMS` (the table the config
checks flows against) really works against its vendor's emulator, and what it does not declare
is refused. A stream declared readable is pulled to its end, one declared writable takes a
write, one declared to sync on webhook events takes what those events bring; a role it does
not declare raises instead of doing something else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.agora import AgoraConnector
from sync_pipeline.connectors.base import Connector, ConnectorContext, ReadsOne
from sync_pipeline.connectors.dingtalk import DingTalkConnector
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.connectors.registry import capabilities
from sync_pipeline.connectors.wecom import WeComConnector
from sync_pipeline.devtools.sandbox.agora import AgoraEmulator
from sync_pipeline.devtools.sandbox.dingtalk import PROCESS_CODES, DingTalkEmulator
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.devtools.sandbox.wecom import WeComEmulator, userid_for
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.errors import ConfigError, VendorRejected
from sync_pipeline.records import (
    EventKind,
    Notification,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    WriteStatus,
    iso_utc,
)
from tests.connectors.conftest import SEED, connector_config, seeded

MAX_PAGES = 200  # a pull of the seeded world ends well before this
WORLD = ReadWindow(
    iso_utc(datetime.fromtimestamp(EPOCH_MS / 1000, UTC)),
    iso_utc(datetime.fromtimestamp((EPOCH_MS + 330 * DAY_MS) / 1000, UTC)),
)


def message(to: str) -> dict[str, Any]:
    return {"kind": "message", "to": to, "content": {"text": "Your request: Approved."}}


def center(applicant: str, approver: str) -> dict[str, Any]:
    content = {
        "title": "Annual leave, 3 days",
        "status": "pending",
        "url": "https://oa.example/r/8812",
        "node": "n1",
        "applicant": applicant,
        "approvers": [approver],
        "last_operator": None,
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-01T08:00:00Z",
        "form": {"days": 3},
    }
    return {"kind": "approval_center", "to": None, "content": content}


def users(emulator: Emulator, vendor: str, key: str) -> list[str]:
    return [str(u[key]) for u in emulator.store.list(vendor, "user", limit=2)]


@dataclass(frozen=True)
class Harness:
    """How to make a vendor's connector for its emulator, and a valid write per stream."""

    emulator: type[Emulator]
    connect: Callable[[Any, ConnectorContext], Connector]
    writes: Mapping[str, Callable[[Any], Mapping[str, Any]]]  # stream -> payload


def _oa(oa: OAEmulator, ctx: ConnectorContext) -> Connector:
    creds = oa.credentials()
    names = ("appid", "secret", "spk", "ofs_syscode")
    config = connector_config(Vendor.OA, oa, {k: creds[k] for k in names}, {"userid": "1"})
    return OAConnector(config, ctx)


def _wecom(wecom: WeComEmulator, ctx: ConnectorContext) -> Connector:
    creds = wecom.credentials()
    config = connector_config(
        Vendor.WECOM,
        wecom,
        {"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        {"agentid": creds["agentid"]},
    )
    return WeComConnector(config, ctx)


def _dingtalk(ding: DingTalkEmulator, ctx: ConnectorContext) -> Connector:
    creds = ding.credentials()
    config = connector_config(
        Vendor.DINGTALK,
        ding,
        {"app_key": creds["appKey"], "app_secret": creds["appSecret"]},
        {
            "agent_id": creds["agentId"],
            "process_codes": list(PROCESS_CODES.values()),
            "process_centre": {"name": "OA approvals"},
        },
    )
    return DingTalkConnector(config, ctx)


def _feishu(feishu: FeishuEmulator, ctx: ConnectorContext) -> Connector:
    creds = feishu.credentials()
    codes = [a["approval_code"] for a in feishu.store.list("feishu", "approval")]
    config = connector_config(
        Vendor.FEISHU,
        feishu,
        {
            "app_id": creds["app_id"],
            "app_secret": creds["app_secret"],
            "action_callback_token": creds["verification_token"],
            "action_callback_key": creds["encrypt_key"],
        },
        {
            "approval_codes": codes,
            "approval_center": {
                "approval_code": "oa",
                "action_callback_url": "http://127.0.0.1:9/webhooks/feishu?callback=quick_approval",
            },
        },
    )
    return FeishuConnector(config, ctx)


def _agora(agora: AgoraEmulator, ctx: ConnectorContext) -> Connector:
    creds = agora.credentials()
    config = connector_config(
        Vendor.AGORA,
        agora,
        {"app_id": creds["app_id"], "app_certificate": creds["app_certificate"]},
        {"org_name": creds["org_name"], "app_name": creds["app_name"]},
    )
    return AgoraConnector(config, ctx)


HARNESS: Mapping[Vendor, Harness] = {
    Vendor.OA: Harness(
        OAEmulator,
        _oa,
        {
            "todos": lambda oa: {
                "kind": "todo",
                "to": oa_user_id("E00004"),
                "content": {
                    "text": "Budget review moved to Friday",
                    "url": "https://chat.example/c/oc_1",
                    "workflow": "Feishu message",
                    "creator": oa_user_id("E00003"),
                    "sent_at": "2026-03-02T09:30:00Z",
                },
            },
            "project_progress": lambda oa: {
                "kind": "project_comment",
                "to": "P001",
                "content": {"text": "Decision: we ship on Friday", "author": oa_user_id("E00003")},
            },
        },
    ),
    Vendor.WECOM: Harness(
        WeComEmulator,
        _wecom,
        {"messages": lambda wecom: message(userid_for(World(SEED).person("E00002")))},
    ),
    Vendor.DINGTALK: Harness(
        DingTalkEmulator,
        _dingtalk,
        {
            "messages": lambda ding: message(users(ding, "dingtalk", "userid")[0]),
            "approval_center": lambda ding: center(*users(ding, "dingtalk", "userid")),
        },
    ),
    Vendor.FEISHU: Harness(
        FeishuEmulator,
        _feishu,
        {
            "messages": lambda feishu: message(users(feishu, "feishu", "open_id")[0]),
            "approval_center": lambda feishu: center(*users(feishu, "feishu", "open_id")),
        },
    ),
    Vendor.AGORA: Harness(AgoraEmulator, _agora, {"messages": lambda agora: message("e00002")}),
}


def declared(able: Callable[[Any], bool]) -> list[Any]:
    """(vendor, stream) of every declared stream that `able` picks, as pytest params."""
    return [
        pytest.param(vendor, stream, id=f"{vendor}-{stream}")
        for vendor in Vendor
        for stream, can in capabilities(vendor).items()
        if able(can)
    ]


@pytest.fixture
def make(serve, store, ctx) -> Callable[[Vendor], tuple[Emulator, Connector]]:
    def made(vendor: Vendor) -> tuple[Emulator, Connector]:
        harness = HARNESS[vendor]
        emulator = seeded(serve, harness.emulator, store, approvals=5)
        return emulator, harness.connect(emulator, ctx)

    return made


def test_every_vendor_has_a_harness_and_a_write_for_each_writable_stream() -> None:
    for vendor in Vendor:
        writable = {s for s, can in capabilities(vendor).items() if can.write}
        assert set(HARNESS[vendor].writes) == writable, vendor


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.read))
def test_given_a_stream_declared_readable_a_pull_reads_it_to_its_end(
    vendor: Vendor, stream: str, make
) -> None:
    _, connector = make(vendor)

    records: list[Record] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = connector.read_page(stream, WORLD, token, 50)
        records += page.records
        token = page.next_token
        if token is None:
            break

    assert token is None
    assert records


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: not can.read))
def test_given_a_stream_not_declared_readable_a_pull_of_it_is_refused(
    vendor: Vendor, stream: str, make
) -> None:
    _, connector = make(vendor)

    with pytest.raises(ConfigError):
        connector.read_page(stream, WORLD, None, 50)


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.write))
def test_given_a_stream_declared_writable_a_write_is_done(
    vendor: Vendor, stream: str, make
) -> None:
    emulator, connector = make(vendor)
    payload = HARNESS[vendor].writes[stream](emulator)

    result = connector.write(
        stream, WriteRequest("c" * 64, "8812", WriteOp.CREATE, Notification.from_json(payload))
    )

    assert result.status is WriteStatus.DONE, result.reason


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: not can.write))
def test_given_a_stream_not_declared_writable_a_write_to_it_is_refused(
    vendor: Vendor, stream: str, make
) -> None:
    _, connector = make(vendor)
    request = WriteRequest(
        "c" * 64, "8812", WriteOp.CREATE, Notification.from_json(message("anyone"))
    )

    with pytest.raises((ConfigError, VendorRejected)):
        connector.write(stream, request)


@pytest.mark.parametrize(
    ("vendor", "stream"), declared(lambda can: EventKind.APPROVAL_CHANGED in can.events)
)
def test_given_approval_changed_events_declared_the_connector_rereads_the_record_named(
    vendor: Vendor, stream: str, make
) -> None:
    _, connector = make(vendor)
    [first, *_] = connector.read_page(stream, WORLD, None, 5).records

    assert isinstance(connector, ReadsOne)
    again = connector.read_one(stream, first.source_id)

    assert again is not None
    assert again.source_id == first.source_id


@pytest.mark.parametrize(
    ("vendor", "stream"), declared(lambda can: EventKind.MESSAGE in can.events)
)
def test_given_message_events_declared_the_connector_hydrates_a_message_record(
    vendor: Vendor, stream: str, make
) -> None:
    _, connector = make(vendor)
    payload = {
        "message_id": "m1",
        "sender": "someone",
        "chat_id": "someone",
        "chat_type": "p2p",
        "text": "#important budget",
        "flags": ["important"],
        "mentions": [],
        "sent_at": "2026-03-02T09:30:00Z",
    }
    record = Record("m1", "m1", "2026-03-02T09:30:00Z", payload)

    [hydrated] = connector.hydrate(stream, [record])

    assert hydrated.source_id == "m1"
