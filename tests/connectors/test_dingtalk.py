"""The DingTalk connector against the DingTalk emulator: tokens, cards by outTrackId, work
notifications, monthly quotas, directory, approvals."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from starlette.applications import Starlette

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.dingtalk import DingTalkConnector, classify, out_track_id
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import (
    PROCESS_CODES,
    DingTalkEmulator,
    instance_kind,
    userid_for,
)
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.errors import (
    QuotaExhausted,
)
from sync_pipeline.http import make_session
from sync_pipeline.processes import free_port
from sync_pipeline.records import (
    Notification,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    WriteStatus,
    iso_utc,
)
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.quotas import PostgresQuotaStore
from tests.connectors.conftest import SEED, connector_config, seeded

CARD = "card/instances/createAndDeliver"
NOTIFY = "message/corpconversation/asyncsend_v2"
TOKEN_API = "oauth2/accessToken"
APPROVALS = 90


@pytest.fixture
def dingtalk(serve, store: SandboxStore) -> DingTalkEmulator:
    return seeded(serve, DingTalkEmulator, store, approvals=APPROVALS)


def dingtalk_config(
    emulator: DingTalkEmulator, monthly_quota: Mapping[str, int] | None = None
) -> Any:
    creds = emulator.credentials()
    config = connector_config(
        Vendor.DINGTALK,
        emulator,
        {"app_key": creds["appKey"], "app_secret": creds["appSecret"]},
        {"agent_id": creds["agentId"], "process_codes": list(PROCESS_CODES.values())},
    )
    return replace(config, monthly_quota=dict(monthly_quota or {}))


@pytest.fixture
def connect(dingtalk: DingTalkEmulator, ctx: ConnectorContext) -> Callable[[], DingTalkConnector]:
    config = dingtalk_config(dingtalk)
    return lambda: DingTalkConnector(config, ctx)


@pytest.fixture
def connector(connect: Callable[[], DingTalkConnector]) -> DingTalkConnector:
    return connect()


@pytest.fixture
def ctx_with_db(redis_url: str, database_url: str) -> Iterator[ConnectorContext]:
    """A worker's context with PostgreSQL, where monthly quotas are counted."""
    migrate(database_url)
    client = redis.Redis.from_url(redis_url)
    session = make_session()
    yield ConnectorContext(client, PostgresQuotaStore(database_url), session)
    session.close()
    client.close()


def user(number: int) -> str:
    return userid_for(World(SEED).person(f"E{number:05d}"))


def card_request(to: str, key: str = "k-card", status: str = "pending") -> WriteRequest:
    return WriteRequest(
        effect_key=key,
        source_id="8812",
        op=WriteOp.CREATE,
        notification=Notification.from_json(
            {
                "kind": "card",
                "to": to,
                "content": {
                    "title": "Leave request #8812",
                    "text": "Leave request #8812: waiting for your decision",
                    "url": "https://oa.example/req/8812",
                    "status": status,
                    "status_label": status.capitalize(),
                },
            }
        ),
    )


def message_request(to: str, key: str = "k-msg", text: str = "Approved.") -> WriteRequest:
    return WriteRequest(
        key,
        "8812",
        WriteOp.CREATE,
        Notification.from_json({"kind": "message", "to": to, "content": {"text": text}}),
    )


def ledger(store: SandboxStore, endpoint: str) -> list[dict[str, Any]]:
    return [e.body for e in store.ledger("dingtalk") if e.endpoint == endpoint]


# -- tokens ----------------------------------------------------------------------------------
def test_given_two_connectors_on_one_redis_the_token_is_fetched_once(connect, store) -> None:
    first, second = connect(), connect()

    first.write("messages", card_request(user(2), "k1"))
    second.write("messages", message_request(user(3), "k2"))

    assert first.client.call_counts()[TOKEN_API] == 1
    assert TOKEN_API not in second.client.call_counts()
    assert len(ledger(store, CARD)) == len(ledger(store, NOTIFY)) == 1


# -- cards -----------------------------------------------------------------------------------
def test_a_card_is_created_under_the_out_track_id_of_its_effect_key(connector, store) -> None:
    """One card however often it is written: the conformance suite (test_conformance.py)."""
    to = user(2)
    request = card_request(to)

    first = connector.write("messages", request)

    (created,) = ledger(store, CARD)
    assert first.status is WriteStatus.DONE
    assert first.target_id == out_track_id(request.effect_key)
    assert created["outTrackId"] == first.target_id
    assert created["openSpaceId"] == f"dtv1.card//IM_ROBOT.{to}"
    params = created["cardData"]["cardParamMap"]
    assert params["title"] == "Leave request #8812"
    assert params["source_id"] == "8812"
    assert params["can_decide"] == "true"
    assert all(isinstance(v, str) for v in params.values())


def test_given_an_unknown_recipient_the_card_is_rejected_not_raised(connector) -> None:
    result = connector.write("messages", card_request("0100000000000000"))

    assert result.status is WriteStatus.REJECTED
    assert "0100000000000000" in result.reason


def test_update_card_puts_the_new_data_under_the_same_out_track_id(connector, store) -> None:
    sent = connector.write("messages", card_request(user(2)))
    update = WriteRequest(
        "k-update",
        "8812",
        WriteOp.UPDATE,
        Notification.from_json(
            {"kind": "update_card", "to": None, "content": {"status": "approved"}}
        ),
        target_id=sent.target_id,
    )

    result = connector.write("messages", update)

    assert result.status is WriteStatus.DONE
    assert result.target_id == sent.target_id
    card = store.get("dingtalk", "card", str(sent.target_id))
    assert card is not None
    assert card["cardData"]["cardParamMap"]["status"] == "approved"
    assert card["cardData"]["cardParamMap"]["can_decide"] == "false"
    assert len(ledger(store, CARD)) == 1


# -- work notifications ----------------------------------------------------------------------
def test_a_message_is_sent_as_a_work_notification(connector, store) -> None:
    to = user(4)

    result = connector.write("messages", message_request(to, text="Your request: Approved."))

    (sent,) = ledger(store, NOTIFY)
    assert result.status is WriteStatus.DONE
    assert result.target_id == str(sent["task_id"])
    assert sent["userid_list"] == to
    assert sent["agent_id"] == connector.agent_id
    assert sent["msg"] == {"msgtype": "text", "text": {"content": "Your request: Approved."}}


# -- two hosts -------------------------------------------------------------------------------
@dataclass
class Host:
    """One of DingTalk's two hosts: where it is served and the paths it was asked for."""

    url: str
    paths: list[str] = field(default_factory=list)

    def app(self, routes: list[Any]) -> Any:
        """`routes` served, each request's path noted first (the others answer 404)."""
        served = Starlette(routes=routes)

        async def noting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.paths.append(scope["path"])
            await served(scope, receive, send)

        return noting


@pytest.fixture
def hosts(serve_app, store: SandboxStore) -> tuple[DingTalkEmulator, Host, Host]:
    """The emulator served as DingTalk serves it: the new API (/v1.0/...) on one host, as
    api.dingtalk.com, and the old one (/topapi/..., /gettoken) on another, as oapi."""
    new_port, old_port = free_port(), free_port()
    new, old = Host(f"http://127.0.0.1:{new_port}"), Host(f"http://127.0.0.1:{old_port}")
    emulator = DingTalkEmulator(store, new.url)
    emulator.seed(World(SEED), approvals=APPROVALS, checkin_days=0)
    routes = emulator.routes()
    serve_app(new.app([r for r in routes if family(r.path) == "new"]), new_port)
    serve_app(old.app([r for r in routes if family(r.path) == "old"]), old_port)
    return emulator, new, old


def family(path: str) -> str:
    """Which of DingTalk's API families a path belongs to (platform-apis.md section 2)."""
    return "new" if path.startswith("/v1.0/") else "old"


def two_host_config(emulator: DingTalkEmulator, new: Host, old: Host, **changes: Any) -> Any:
    """connectors.yaml's entry for DingTalk itself: base_url the new API's host,
    oapi_base_url the old one's."""
    creds = emulator.credentials()
    config = connector_config(
        Vendor.DINGTALK,
        emulator,
        {"app_key": creds["appKey"], "app_secret": creds["appSecret"]},
        {"agent_id": creds["agentId"], "oapi_base_url": old.url},
    )
    return replace(config, base_url=new.url, **changes)


def test_given_two_hosts_each_api_family_is_sent_to_its_own(hosts, ctx, store) -> None:
    emulator, new, old = hosts
    connector = DingTalkConnector(two_host_config(emulator, new, old), ctx)

    card = connector.write("messages", card_request(user(2), "k1"))
    message = connector.write("messages", message_request(user(3), "k2"))
    users = connector.list_users()

    assert (card.status, message.status) == (WriteStatus.DONE, WriteStatus.DONE), message.reason
    assert users
    assert {family(path) for path in new.paths} == {"new"}
    assert {family(path) for path in old.paths} == {"old"}
    assert len(ledger(store, CARD)) == len(ledger(store, NOTIFY)) == 1


def test_given_two_hosts_the_monthly_quota_counts_the_calls_to_both(
    hosts, ctx_with_db, store
) -> None:
    emulator, new, old = hosts
    config = two_host_config(emulator, new, old, monthly_quota={"all": 3})
    connector = DingTalkConnector(config, ctx_with_db)
    connector.write("messages", card_request(user(2), "k1"))  # token + card: the new host
    connector.write("messages", message_request(user(3), "k2"))  # the old host

    with pytest.raises(QuotaExhausted):
        connector.write("messages", message_request(user(4), "k3"))

    assert len(new.paths) + len(old.paths) == 3


# -- quotas ----------------------------------------------------------------------------------
@pytest.mark.parametrize("request_for", [card_request, message_request], ids=["new", "old"])
def test_given_dingtalks_monthly_quota_is_spent_90020_stops_without_retrying(
    connector, store, request_for
) -> None:
    store.set_setting("dingtalk", "monthly_quota", "1")
    connector.write("messages", request_for(user(2), "k1"))
    sent_before = connector.client.calls

    with pytest.raises(QuotaExhausted) as caught:
        connector.write("messages", request_for(user(3), "k2"))

    assert caught.value.retryable is False
    assert connector.client.calls == sent_before + 1  # refused once, never retried


def test_given_the_local_monthly_quota_is_spent_no_call_is_sent(
    dingtalk, ctx_with_db, store
) -> None:
    config = dingtalk_config(dingtalk, monthly_quota={"all": 3})
    connector = DingTalkConnector(config, ctx_with_db)
    connector.write("messages", message_request(user(2), "k1"))  # token + send
    connector.write("messages", message_request(user(3), "k2"))

    with pytest.raises(QuotaExhausted) as caught:
        connector.write("messages", message_request(user(4), "k3"))

    assert (caught.value.api, caught.value.limit) == ("*", 3)
    assert connector.client.calls == 3  # the token fetch counted too
    assert len(ledger(store, NOTIFY)) == 2


# -- directory -------------------------------------------------------------------------------
def test_list_users_returns_every_person_with_their_job_number(connector) -> None:
    world = World(SEED)

    users = connector.list_users()

    by_no = {u.employee_no: u for u in users}
    assert sorted(by_no) == sorted(p.employee_no for p in world.people)
    for person in world.people:
        found = by_no[person.employee_no]
        assert found.user_id == userid_for(person)
        assert (found.email, found.name) == (person.email, person.name)


# -- approvals -------------------------------------------------------------------------------
def window(since_day: int, until_day: int) -> ReadWindow:
    def iso(day: int) -> str:
        return iso_utc(datetime.fromtimestamp((EPOCH_MS + day * DAY_MS) / 1000, UTC))

    return ReadWindow(iso(since_day), iso(until_day))


def read_all(connector: DingTalkConnector, window: ReadWindow, limit: int) -> list[Record]:
    records: list[Record] = []
    token = None
    while True:
        page = connector.read_page("approvals", window, token, limit)
        assert len(page.records) <= limit
        records += page.records
        token = page.next_token
        if token is None:
            return records


def created_within(store: SandboxStore, since_day: int, until_day: int) -> set[str]:
    return {
        str(row["processInstanceId"])
        for code in PROCESS_CODES.values()
        for row in store.list(
            "dingtalk",
            instance_kind(code),
            time_field="created_ms",
            from_ms=EPOCH_MS + since_day * DAY_MS,
            to_ms=EPOCH_MS + until_day * DAY_MS,
        )
    }


def test_approvals_of_every_process_are_read_with_their_template_and_status(
    connector, store
) -> None:
    """Each once, in cursor order, within the window: the conformance suite."""
    store.set_setting("dingtalk", "rate_limit_scale", "0")

    records = read_all(connector, window(10, 290), limit=7)

    assert {r.source_id for r in records} == created_within(store, 10, 290)
    assert {r.payload["template"] for r in records} == set(PROCESS_CODES.values())
    for record in records:
        assert record.payload["status"] in {"pending", "approved", "rejected", "revoked"}
        pending = record.payload["status"] == "pending"
        assert len(record.payload["current_approvers"]) == (1 if pending else 0)


# -- the seam --------------------------------------------------------------------------------
def test_classify_names_the_monthly_limit_of_a_spent_quota_and_never_retries_it() -> None:
    """The wait of a throttle (90018: a second) is in the conformance suite's answers."""
    spent = classify(200, {"errcode": 90020}, {}, monthly_limit=500)

    assert isinstance(spent, QuotaExhausted)
    assert (spent.retryable, spent.limit) == (False, 500)


# Paging to the end, cursor order, error classes (codes, waits, faults), token refresh and
# writes idempotent under their key: tests/connectors/test_conformance.py, for every vendor.
