"""The scene of the approval and card event tests: one seeded sandbox server per module, this
test's own PostgreSQL schema and Redis db, the shipped config, and readers of the ledgers.

Events are built as the webhook service decodes them (records.InboundEvent's contract),
recorded with `inbound.record` as it records them, and handled with `events.handle` as the
`events.handle` task does. People are the seeded World's, named by employee number.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox import dingtalk as sandbox_dingtalk
from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.records import EventKind, InboundEvent, iso_utc
from sync_pipeline.settings import load_settings
from sync_pipeline.state import inbound, migrate
from sync_pipeline.state.inbound import EventStatus
from tests.conftest import ROOT

SEED = 7
WORLD = World(SEED)
OA = "sandbox_oa"
WECOM_FLOW, FEISHU_FLOW, DINGTALK_FLOW = (
    "approvals_to_wecom",
    "approvals_to_feishu",
    "approvals_to_dingtalk",
)
NOWHERE = "http://127.0.0.1:1/callbacks"  # presses are built here, not sent: nobody listens
OA_ACTIONS = ("/submitRequest", "/rejectRequest")
_titles = itertools.count(1)


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def sandbox(sandbox_dir: Path) -> Iterator[SandboxClient]:
    """One seeded sandbox server for the module; each test reads the ledger for its own
    approvals, which carry titles no other test uses."""
    with seeded_sandbox(sandbox_dir, seed=SEED, approvals=10, checkin_days=1) as client:
        for platform in ("wecom", "dingtalk", "feishu"):  # WeCom sends callback cards only then
            client.settings(platform, {"callback_url": f"{NOWHERE}/{platform}"})
        yield client


@pytest.fixture
def rt(service_env: dict[str, str], sandbox: SandboxClient) -> Runtime:
    """A worker's runtime on this test's PostgreSQL schema and Redis db, with the shipped
    config pointed at the sandbox."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}
    return build_runtime(load_settings(env), env)


def switched(rt: Runtime, flow: str, *, enabled: bool) -> Runtime:
    """The runtime with one flow enabled or disabled, as a worker started on a config file
    that says so would have it."""
    flows = {**rt.config.flows, flow: replace(rt.config.flows[flow], enabled=enabled)}
    return replace(rt, config=replace(rt.config, flows=flows))


@pytest.fixture
def sandbox_store(sandbox: SandboxClient, sandbox_dir: Path) -> SandboxStore:
    """The running sandbox's own store, for what no API offers (an id of a test's choosing)."""
    return SandboxStore(store_path(sandbox_dir))


# -- people ---------------------------------------------------------------------------------
def oa_id(employee_no: str) -> str:
    return oa_user_id(employee_no)


def wecom_id(employee_no: str) -> str:
    return sandbox_wecom.userid_for(WORLD.person(employee_no))


def dingtalk_id(employee_no: str) -> str:
    return sandbox_dingtalk.userid_for(WORLD.person(employee_no))


def name(employee_no: str) -> str:
    return WORLD.person(employee_no).name


# -- the OA -----------------------------------------------------------------------------------
def new_approval(
    sandbox: SandboxClient, applicant: str, approvers: list[str], title: str = ""
) -> tuple[str, str]:
    """(request id, title): a pending request at its first approver, with a title of its own."""
    title = title or f"Leave request {uuid.uuid4().hex[:8]} #{next(_titles)}"
    made = sandbox.create_approval(applicant=applicant, approvers=approvers, title=title)
    return str(made["requestId"]), title


def oa_actions(sandbox: SandboxClient, request_id: str) -> list[tuple[str, str]]:
    """Every approve / reject the OA accepted through its API for a request: (action, user)."""
    found = []
    for entry in sandbox.ledger("oa"):
        endpoint = str(entry["endpoint"])
        if endpoint.endswith(OA_ACTIONS) and _mentions(entry, request_id):
            action = "approve" if endpoint.endswith("/submitRequest") else "reject"
            found.append((action, str(entry["caller"])))
    return found


# -- events -----------------------------------------------------------------------------------
def approval_changed(request_id: str, status: str = "pending") -> InboundEvent:
    """What the OA's change webhook decodes to; every delivery has an id of its own."""
    return InboundEvent(
        connector=OA,
        vendor="oa",
        event_id=str(uuid.uuid4()),
        kind=EventKind.APPROVAL_CHANGED,
        occurred_at=iso_utc(datetime.now(UTC)),
        data={"source_id": request_id, "status": status, "version": None},
    )


def card_action(
    connector: str,
    vendor: str,
    user_id: str,
    action: str,
    request_id: str,
    card: Mapping[str, str],
    comment: str = "",
) -> InboundEvent:
    """What a card button's callback decodes to (a new event id for every press)."""
    return InboundEvent(
        connector=connector,
        vendor=vendor,
        event_id=f"press-{uuid.uuid4().hex}",
        kind=EventKind.CARD_ACTION,
        occurred_at=iso_utc(datetime.now(UTC)),
        data={
            "user_id": user_id,
            "action": action,
            "source_id": request_id,
            "comment": comment,
            "card": dict(card),
        },
    )


def record(rt: Runtime, event: InboundEvent) -> int | None:
    """What the webhook service does with a verified delivery: its row id, None if a repeat."""
    with rt.engine.begin() as conn:
        return inbound.record(conn, event)


def deliver(rt: Runtime, event: InboundEvent) -> EventStatus:
    """Record a delivery and handle it as the events.handle task does."""
    row = record(rt, event)
    assert row is not None, "a new delivery is recorded"
    return events.handle(rt, row)


def outcome(rt: Runtime, event: InboundEvent) -> inbound.StoredEvent:
    """The recorded event as handling left it (status and reason)."""
    with rt.engine.connect() as conn:
        row = conn.execute(
            inbound.inbound_events.select().where(
                inbound.inbound_events.c.connector == event.connector,
                inbound.inbound_events.c.event_id == event.event_id,
            )
        ).one()
        found = inbound.get(conn, int(row.id))
    assert found is not None
    return found


# -- the IM ledgers ---------------------------------------------------------------------------
def wecom_sends(sandbox: SandboxClient, title: str) -> list[tuple[str, str]]:
    """WeCom messages about one request: (kind, touser); kind "card" or "message"."""
    sent = []
    for entry in sandbox.ledger("wecom"):
        body = entry["body"]
        if entry["endpoint"] == "message/send" and _mentions(entry, title):
            kind = "card" if body.get("msgtype") == "template_card" else "message"
            sent.append((kind, str(body["touser"])))
    return sent


def wecom_card(sandbox: SandboxClient, title: str, userid: str) -> Mapping[str, Any]:
    """The template card one user got for a request."""
    for entry in sandbox.ledger("wecom"):
        body = entry["body"]
        mine = body.get("msgtype") == "template_card" and body.get("touser") == userid
        if mine and _mentions(entry, title):
            card: Mapping[str, Any] = body["template_card"]
            return card
    raise AssertionError(f"no WeCom card about {title!r} for {userid}")


def wecom_updates(sandbox: SandboxClient, codes: set[str]) -> list[Mapping[str, Any]]:
    """update_template_card calls made with any of these response codes."""
    return [
        entry["body"]
        for entry in sandbox.ledger("wecom")
        if entry["endpoint"] == "message/update_template_card"
        and entry["body"].get("response_code") in codes
    ]


def wecom_texts(sandbox: SandboxClient, userid: str, since_seq: int) -> list[str]:
    """Text messages one user got since a ledger mark."""
    return [
        str(entry["body"]["text"]["content"])
        for entry in sandbox.ledger("wecom", since_seq=since_seq)
        if entry["endpoint"] == "message/send"
        and entry["body"].get("msgtype") == "text"
        and entry["body"].get("touser") == userid
    ]


def press_wecom(sandbox: SandboxClient, task_id: str, userid: str, key: str) -> InboundEvent:
    """A WeCom user presses a card button; the emulator mints the one-use ResponseCode."""
    pressed = sandbox.press(
        "wecom", {"kind": "button", "task_id": task_id, "userid": userid, "key": key}
    )
    code = str(pressed["response_code"])
    action, _, request_id = key.partition(":")
    return card_action(
        "sandbox_wecom",
        "wecom",
        userid,
        action,
        request_id,
        {"response_code": code, "task_id": task_id},
    )


def wecom_card_send(sandbox: SandboxClient, title: str, who: str) -> Mapping[str, Any]:
    """The message/send that carried `who`'s WeCom card (with the response_code it returned)."""
    for entry in sandbox.ledger("wecom"):
        body = entry["body"]
        mine = body.get("msgtype") == "template_card" and body.get("touser") == wecom_id(who)
        if mine and title in json.dumps(body, ensure_ascii=False):
            found: Mapping[str, Any] = body
            return found
    raise AssertionError(f"no WeCom card about {title!r} for {who}")


def feishu_card(sandbox: SandboxClient, title: str) -> tuple[str, str]:
    """(message id, recipient open_id) of the Feishu card about a request."""
    for entry in sandbox.ledger("feishu"):
        body = entry["body"]
        if body.get("msg_type") == "interactive" and title in str(body.get("content")):
            return str(body["message_id"]), str(body["receive_id"])
    raise AssertionError(f"no Feishu card about {title!r}")


def feishu_patches(sandbox: SandboxClient, message_id: str) -> list[Any]:
    return [
        json.loads(entry["body"]["content"])
        for entry in sandbox.ledger("feishu")
        if entry["endpoint"].startswith("PATCH") and entry["body"].get("message_id") == message_id
    ]


def dingtalk_card(sandbox: SandboxClient, title: str, userid: str) -> str:
    for entry in sandbox.ledger("dingtalk"):
        body = entry["body"]
        card = entry["endpoint"] == "card/instances/createAndDeliver"
        if (
            card
            and body.get("spaceId") == userid
            and body["cardData"]["cardParamMap"].get("title") == title
        ):
            return str(body["outTrackId"])
    raise AssertionError(f"no DingTalk card about {title!r} for {userid}")


def dingtalk_updates(sandbox: SandboxClient, track: str) -> list[Mapping[str, Any]]:
    return [
        entry["body"]["cardData"]["cardParamMap"]
        for entry in sandbox.ledger("dingtalk")
        if entry["endpoint"] == "card/instances" and entry["body"].get("outTrackId") == track
    ]


def oa_remarks(sandbox: SandboxClient, request_id: str) -> list[str]:
    return [
        str(entry["body"].get("remark"))
        for entry in sandbox.ledger("oa")
        if str(entry["endpoint"]).endswith(("/submitRequest", "/rejectRequest"))
        and entry["body"].get("requestId") == request_id
    ]


def entries(sandbox: SandboxClient, platform: str, text: str) -> list[Mapping[str, Any]]:
    """Every write a platform accepted whose body mentions `text`."""
    return [e for e in sandbox.ledger(platform) if _mentions(e, text)]


def _mentions(entry: Mapping[str, Any], text: str) -> bool:
    return text in json.dumps(entry["body"], ensure_ascii=False)
