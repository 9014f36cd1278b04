"""The E9 connector against the OA emulator: tokens, keyset paging, hydrate, directory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.markup import link
from sync_pipeline.connectors.oa import OAConnector, approval_status
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import ADMIN_USER_ID, OAEmulator, oa_user_id
from sync_pipeline.devtools.sandbox.server import FaultCache, FaultInjector
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.errors import (
    ConfigError,
    VendorRejected,
)
from sync_pipeline.records import (
    Notification,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    iso_utc,
    minus_seconds,
)
from tests.connectors.conftest import SEED, connector_config, seeded

APPROVALS = 500
PA = "POST /api/workflow/paService"
LIST = f"oa {PA}/getAllWorkflowRequestList"
APPLYTOKEN = "oa POST /api/ec/dev/auth/applytoken"
DETAIL = "oa GET /api/workflow/paService/getWorkflowRequest"
OPERATORS = "oa GET /api/workflow/paService/getRequestOperatorInfo"


class CountedOA(OAEmulator):
    """The OA emulator behind the sandbox server's call counter, so store.calls sees each call."""

    def routes(self) -> list[BaseRoute]:
        app = Starlette(routes=super().routes())
        return [Mount("", app=FaultInjector(app, self, FaultCache(self.store)))]


@pytest.fixture
def oa(serve, store: SandboxStore) -> OAEmulator:
    return seeded(serve, CountedOA, store, approvals=APPROVALS)


@pytest.fixture
def connect(oa: OAEmulator, ctx: ConnectorContext) -> Callable[..., OAConnector]:
    """A new connector instance (a new worker process, say) sharing this test's Redis."""

    def make(**overrides: str) -> OAConnector:
        creds = oa.credentials()
        given = {k: creds[k] for k in ("appid", "secret", "spk")} | overrides
        config = connector_config(Vendor.OA, oa, given, {"userid": creds["userid"]})
        return OAConnector(config, ctx)

    return make


@pytest.fixture
def connector(connect: Callable[..., OAConnector]) -> OAConnector:
    return connect()


def iso(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))


WHOLE = ReadWindow(iso(EPOCH_MS), iso(EPOCH_MS + 320 * DAY_MS))  # decisions run past day 300


def read_all(
    connector: OAConnector,
    window: ReadWindow,
    limit: int,
    after_page: Callable[[int], None] | None = None,
) -> list[Record]:
    records: list[Record] = []
    token: str | None = None
    number = 0
    while True:
        page = connector.read_page("approvals", window, token, limit)
        assert len(page.records) <= limit
        records += page.records
        number += 1
        if after_page is not None:
            after_page(number)
        token = page.next_token
        if token is None:
            return records


def in_order(store: SandboxStore) -> list[str]:
    """Every request id in the OA's own (lastOperateTime, requestId) order."""
    return [str(a["requestId"]) for a in store.list("oa", "approval")]


def calls_since(store: SandboxStore, before: dict[str, int]) -> dict[str, int]:
    now = store.calls("oa")
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}


# -- tokens ----------------------------------------------------------------------------------
def test_given_two_connectors_on_one_redis_the_token_is_applied_for_once(connect, store) -> None:
    first, second = connect(), connect()

    first.read_page("approvals", WHOLE, None, 5)
    second.read_page("approvals", WHOLE, None, 5)

    assert store.calls("oa")[APPLYTOKEN] == 1
    assert store.calls("oa")[LIST] == 2


def test_given_a_wrong_secret_the_error_names_the_credentials(connect) -> None:
    connector = connect(secret="not-the-secret")

    with pytest.raises(ConfigError) as caught:
        connector.read_page("approvals", WHOLE, None, 5)

    assert caught.value.problems[0][0] == "test_oa.credentials"


def test_given_the_gateway_throttles_the_read_waits_retry_after_and_succeeds(
    connector, store
) -> None:
    store.set_setting("oa", "rate_limit_scale", "0.01")  # one call a second per appid

    page = connector.read_page("approvals", WHOLE, None, 5)  # applytoken, then the list

    assert len(page.records) == 5
    assert store.calls("oa")[LIST] == 2  # a 429 with Retry-After: 1, then the retry


# -- paging ----------------------------------------------------------------------------------
def test_an_approval_record_has_the_canonical_shape_from_the_list(connector, store) -> None:
    records = read_all(connector, WHOLE, limit=100)

    for record in records:
        body = store.get("oa", "approval", record.source_id)
        assert body is not None
        assert record.payload["status"] == body["state"]
        assert record.payload["applicant"] == body["creatorId"]
        assert record.payload["title"] == body["requestName"]
        assert record.payload["updated_at"] == record.cursor_value == iso(body["lastOperateTime"])
        assert record.payload["created_at"] == iso(body["createTime"])
        assert record.payload["url"].endswith(f"requestid={record.source_id}")


def test_given_a_request_id_with_url_syntax_its_link_carries_the_id_percent_encoded(
    connector, store
) -> None:
    body = store.get("oa", "approval", in_order(store)[0])
    assert body is not None
    request_id = "R1&requestid=R2#/x y\x00"  # E9's ids are numbers; nothing enforces it
    store.put("oa", "approval", request_id, {**body, "requestId": request_id})

    record = connector.read_one("approvals", request_id)

    assert record is not None
    url = record.payload["url"]
    assert url.endswith("#/main/workflow/req?requestid=R1%26requestid%3DR2%23%2Fx%20y%00")
    assert link(url) == url  # a link every connector shows: the card keeps its Open button


def test_an_approval_edited_while_paging_is_neither_lost_nor_duplicated(
    connector, oa, store
) -> None:
    order = in_order(store)
    signpost = iso_utc(datetime.now(UTC))  # the run's start: edits from now on wait for the next
    first_window = ReadWindow(iso(EPOCH_MS), signpost)
    read_then_edited, unread_then_edited = order[10], order[300]

    def edit_after_second_page(number: int) -> None:
        if number == 2:
            for request_id in (read_then_edited, unread_then_edited):
                oa.transition(request_id, "comment", ADMIN_USER_ID, "edited while paging")

    first = read_all(connector, first_window, limit=50, after_page=edit_after_second_page)
    # The next run starts later and reads from its cursor minus the lookback.
    later = iso_utc(datetime.now(UTC) + timedelta(seconds=1))
    second_window = ReadWindow(minus_seconds(first[-1].cursor_value, 300), later)
    second = read_all(connector, second_window, limit=50)

    assert [r.source_id for r in first] == [i for i in order if i != unread_then_edited]
    second_ids = [r.source_id for r in second]
    assert len(second_ids) == len(set(second_ids))
    assert {read_then_edited, unread_then_edited} <= set(second_ids)
    assert {r.source_id for r in first} | set(second_ids) == set(order)
    old = next(r for r in first if r.source_id == read_then_edited)
    new = next(r for r in second if r.source_id == read_then_edited)
    assert new.version != old.version


def test_more_rows_in_one_second_than_a_page_are_paged_within_that_second(connector, store) -> None:
    order = in_order(store)
    crowd = order[100:112]  # twelve requests, moved to one shared second
    same_second = store.get("oa", "approval", order[100])
    assert same_second is not None
    at = int(same_second["lastOperateTime"])
    for request_id in crowd:
        body = store.get("oa", "approval", request_id)
        assert body is not None
        body["lastOperateTime"] = at
        store.put("oa", "approval", request_id, body, updated_ms=at)

    records = read_all(connector, WHOLE, limit=5)

    assert [r.source_id for r in records] == in_order(store)
    assert sorted(r.source_id for r in records if r.cursor_value == iso(at)) == sorted(crowd)


def test_a_window_without_changes_costs_exactly_one_list_call(connector, store) -> None:
    connector.read_page("approvals", WHOLE, None, 1)  # the token is applied for here
    quiet = ReadWindow(iso(EPOCH_MS + 330 * DAY_MS), iso(EPOCH_MS + 331 * DAY_MS))
    before = store.calls("oa")

    page = connector.read_page("approvals", quiet, None, 100)

    assert page.records == ()
    assert page.next_token is None
    assert page.calls == 1
    assert calls_since(store, before) == {LIST: 1}


def test_a_window_that_fits_one_page_costs_one_list_call_and_no_detail(connector, store) -> None:
    connector.read_page("approvals", WHOLE, None, 1)
    ten_days = ReadWindow(iso(EPOCH_MS + 100 * DAY_MS), iso(EPOCH_MS + 110 * DAY_MS))
    before = store.calls("oa")

    page = connector.read_page("approvals", ten_days, None, 100)

    assert 0 < len(page.records) < 100
    assert calls_since(store, before) == {LIST: 1}


# -- hydrate ---------------------------------------------------------------------------------
def test_hydrate_fills_form_and_the_current_approvers_of_pending_requests(connector, store) -> None:
    page = connector.read_page("approvals", WHOLE, None, 40)
    pending = [r for r in page.records if r.payload["status"] == "pending"]
    assert 0 < len(pending) < len(page.records)
    before = store.calls("oa")

    hydrated = connector.hydrate("approvals", page.records)

    assert [r.source_id for r in hydrated] == [r.source_id for r in page.records]
    for record in hydrated:
        body = store.get("oa", "approval", record.source_id)
        assert body is not None
        expected = [body["currentOperatorId"]] if body["state"] == "pending" else []
        assert record.payload["current_approvers"] == expected
        assert record.payload["form"] == body["form"]
        assert record.version == next(
            r.version for r in page.records if r.source_id == record.source_id
        )
    assert calls_since(store, before) == {DETAIL: len(page.records), OPERATORS: len(pending)}


# -- directory -------------------------------------------------------------------------------
def test_list_users_returns_every_person_with_their_employee_number(connector) -> None:
    world = World(SEED)

    users = connector.list_users()

    by_no = {u.employee_no: u for u in users}
    assert sorted(by_no) == sorted(p.employee_no for p in world.people)
    for person in world.people:
        user = by_no[person.employee_no]
        assert user.user_id == oa_user_id(person.employee_no)
        assert (user.email, user.mobile, user.name) == (person.email, person.mobile, person.name)


# -- the seam --------------------------------------------------------------------------------
def test_a_write_to_approvals_is_refused_as_an_unsupported_stream(connector) -> None:
    """Refused, with no vendor dedupe claimed for it: the conformance suite; here, the code."""
    seam: Connector = connector
    request = WriteRequest(
        "k1",
        "R000001",
        WriteOp.UPDATE,
        Notification.from_json({"kind": "message", "content": {"action": "approve"}}),
    )

    with pytest.raises(VendorRejected) as caught:
        seam.write("approvals", request)

    assert caught.value.code == "unsupported_stream"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"currentnodetype": "1", "status": "审批1"}, "pending"),
        ({"currentnodetype": "3", "status": "归档"}, "approved"),
        ({"currentnodetype": "0", "status": "退回", "isbereject": "1"}, "rejected"),
        ({"currentnodetype": "0", "status": "撤回"}, "revoked"),
        ({"status": "归档"}, "approved"),  # builds without currentnodetype
    ],
)
def test_approval_status_reads_e9_node_facts(row: dict[str, Any], expected: str) -> None:
    assert approval_status(row) == expected


@pytest.mark.parametrize("odd_id", ["²", "٣", "9" * 5000])
def test_given_a_request_id_int_refuses_the_page_position_orders_it_as_text(odd_id):
    from sync_pipeline.connectors.oa import _Position

    position = _Position(at="2026-01-01 00:00:00", after_id=odd_id)

    assert not position.passed({"lastOperateTime": "2026-01-01 00:00:00", "requestId": "12"})


# Paging to the end, cursor order, error classes (codes, waits, faults), token refresh and
# writes idempotent under their key: tests/connectors/test_conformance.py, for every vendor.
