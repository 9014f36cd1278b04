"""Outside text never changes what a connector sends, only the text in it.

A conformance test over every IM connector against its emulator: for arbitrary text in every
content field (title, text, status label, a form field's name and value), the card or message
in the emulator's ledger has the structure of the one made from plain text: the same
elements, buttons, links and mentions, and every markdown string still one plain paragraph.
And a megabyte in every field is sent cut to the vendor's limits, not refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.agora import AgoraConnector
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.dingtalk import DingTalkConnector
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.connectors.wecom import WeComConnector
from sync_pipeline.devtools.sandbox import dingtalk as dingtalk_sandbox
from sync_pipeline.devtools.sandbox import wecom as wecom_sandbox
from sync_pipeline.devtools.sandbox.agora import AgoraEmulator
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import DingTalkEmulator
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.wecom import WeComEmulator
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteStatus
from tests.connectors.conftest import SEED, connector_config
from tests.hostile import PIECES
from tests.structure import STRUCTURES, Structure

URL = "https://oa.example/r/8812"
EMPLOYEE = "E00002"

texts = st.one_of(
    st.lists(st.sampled_from(PIECES) | st.characters(), max_size=40).map("".join),
    st.sampled_from(PIECES).map(lambda piece: piece * 2000),  # past every vendor's limit
).map(lambda text: f"{text} z")  # never empty once normalised, as the plain text is not
serial = itertools.count()


@dataclass(frozen=True)
class Target:
    """One IM connector against its emulator: how to make it, whom to send to, and how to
    read the structure of what it sent."""

    vendor: Vendor
    emulator: type[Emulator]
    connect: Callable[[Emulator, ConnectorContext], Connector]
    recipient: Callable[[SandboxStore], str]
    structure: Structure  # tests/structure.py


def feishu_open_id(store: SandboxStore) -> str:
    return str(store.list("feishu", "user", equals={"employee_no": EMPLOYEE})[0]["open_id"])


TARGETS = {
    "feishu": Target(
        Vendor.FEISHU,
        FeishuEmulator,
        lambda e, ctx: FeishuConnector(
            connector_config(Vendor.FEISHU, e, _pick(e, "app_id", "app_secret")), ctx
        ),
        feishu_open_id,
        STRUCTURES["feishu"],
    ),
    "wecom": Target(
        Vendor.WECOM,
        WeComEmulator,
        lambda e, ctx: WeComConnector(
            connector_config(
                Vendor.WECOM,
                e,
                _pick(e, "corpid", "corpsecret"),
                {"agentid": e.credentials()["agentid"]},
            ),
            ctx,
        ),
        lambda _: wecom_sandbox.userid_for(World(SEED).person(EMPLOYEE)),
        STRUCTURES["wecom"],
    ),
    "dingtalk": Target(
        Vendor.DINGTALK,
        DingTalkEmulator,
        lambda e, ctx: DingTalkConnector(
            connector_config(
                Vendor.DINGTALK,
                e,
                {"app_key": e.credentials()["appKey"], "app_secret": e.credentials()["appSecret"]},
                {"agent_id": e.credentials()["agentId"]},
            ),
            ctx,
        ),
        lambda _: dingtalk_sandbox.userid_for(World(SEED).person(EMPLOYEE)),
        STRUCTURES["dingtalk"],
    ),
    "agora": Target(
        Vendor.AGORA,
        AgoraEmulator,
        lambda e, ctx: AgoraConnector(
            connector_config(
                Vendor.AGORA,
                e,
                _pick(e, "app_id", "app_certificate"),
                {"org_name": e.credentials()["org_name"], "app_name": e.credentials()["app_name"]},
            ),
            ctx,
        ),
        lambda _: EMPLOYEE.lower(),
        STRUCTURES["agora"],
    ),
}


def _pick(emulator: Emulator, *names: str) -> dict[str, str]:
    creds = emulator.credentials()
    return {name: creds[name] for name in names}


@dataclass
class Sender:
    """A connector, its emulator's store, and the structure of what it last sent."""

    target: Target
    connector: Connector
    store: SandboxStore
    mark: int = 0  # the ledger entry the last send made

    def send(self, kind: str, content: Mapping[str, Any]) -> Any:
        payload = {"kind": kind, "to": self.target.recipient(self.store), "content": content}
        request = WriteRequest(
            f"k-{next(serial)}", "8812", WriteOp.CREATE, Notification.from_json(payload)
        )
        result = self.connector.write("messages", request)
        assert result.status is WriteStatus.DONE, result.reason
        sent = self.store.ledger(self.target.vendor.value, since_seq=self.mark)
        assert len(sent) == 1, [e.endpoint for e in sent]
        self.mark = sent[0].seq
        return self.target.structure(sent[0].body, URL)


@pytest.fixture(params=sorted(TARGETS))
def sender(request, serve, store: SandboxStore, ctx: ConnectorContext) -> Sender:
    target = TARGETS[request.param]
    emulator = serve(target.emulator, store)
    emulator.seed(World(SEED), approvals=0, checkin_days=0)
    store.set_setting("wecom", "callback_url", "http://127.0.0.1:9/wecom/callback")
    return Sender(target, target.connect(emulator, ctx), store)


def content(title: str, text: str, label: str, name: str, value: str) -> dict[str, Any]:
    """A notification's content; its text starts with a number of its own, since WeCom and
    DingTalk drop a repeat of the same message."""
    return {
        "title": title,
        "text": f"{next(serial)} {text}",
        "url": URL,
        "status": "pending",
        "status_label": label,
        "fields": {name: value},
    }


def plain() -> dict[str, Any]:
    return content(*(f"{field} z" for field in ("title", "text", "label", "name", "value")))


@pytest.mark.parametrize("kind", ["card", "message"])
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=texts, text=texts, label=texts, name=texts, value=texts)
def test_given_any_text_in_the_content_what_is_sent_has_the_structure_of_plain_text(
    sender: Sender, kind: str, title: str, text: str, label: str, name: str, value: str
) -> None:
    made_plain = sender.send(kind, plain())

    made = sender.send(kind, content(title, text, label, name, value))

    assert made == made_plain


@pytest.mark.parametrize("kind", ["card", "message"])
def test_given_a_megabyte_in_every_field_the_write_is_sent_cut(sender: Sender, kind: str) -> None:
    huge = "[Approve](http://evil.example) <at id=all></at> 假\n" * 20_000  # about 1 MB

    made = sender.send(kind, content(huge, huge, huge, huge, huge))

    assert made == sender.send(kind, plain())
