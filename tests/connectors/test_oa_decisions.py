"""The E9 connector re-reads one request and decides it as its approver, against the OA
emulator: the acting user is the one E9's encrypted `userid` header names."""

from __future__ import annotations

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext, Decision
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.errors import VendorRejected
from sync_pipeline.records import ReadWindow
from tests.connectors.conftest import connector_config, seeded

APPLICANT, FIRST, SECOND = oa_user_id("E00010"), oa_user_id("E00011"), oa_user_id("E00012")


@pytest.fixture
def oa(serve, store: SandboxStore) -> OAEmulator:
    return seeded(serve, OAEmulator, store, approvals=0)


@pytest.fixture
def connector(oa: OAEmulator, ctx: ConnectorContext) -> OAConnector:
    creds = oa.credentials()
    given = {k: creds[k] for k in ("appid", "secret", "spk")}
    return OAConnector(connector_config(Vendor.OA, oa, given, {"userid": "1"}), ctx)


def request(oa: OAEmulator) -> str:
    return str(oa.create_approval(APPLICANT, [FIRST, SECOND], title="Leave")["requestId"])


def test_read_one_gives_the_record_a_page_gives(oa: OAEmulator, connector: OAConnector) -> None:
    request_id = request(oa)
    [listed] = connector.read_page("approvals", ReadWindow(None, None), None, 10).records

    one = connector.read_one("approvals", request_id)

    assert one == listed
    assert (one.payload["node"], one.payload["last_operator"]) == ("100301", APPLICANT)


def test_hydrating_what_read_one_gave_reads_the_request_once(
    oa: OAEmulator, connector: OAConnector
) -> None:
    request_id = request(oa)
    one = connector.read_one("approvals", request_id)
    assert one is not None

    [hydrated] = connector.hydrate("approvals", [one])

    calls = connector.client.call_counts()
    assert calls["workflow/getWorkflowRequest"] == 1
    assert hydrated.payload["current_approvers"] == [FIRST]
    assert hydrated.version == one.version


def test_a_record_read_again_after_a_change_is_hydrated_from_the_new_read(
    oa: OAEmulator, connector: OAConnector
) -> None:
    request_id = request(oa)
    before = connector.read_one("approvals", request_id)
    connector.decide("approvals", request_id, Decision.APPROVE, FIRST, "")
    after = connector.read_one("approvals", request_id)
    assert before is not None
    assert after is not None

    [hydrated] = connector.hydrate("approvals", [after])

    assert hydrated.payload["current_approvers"] == [SECOND]
    assert connector.client.call_counts()["workflow/getWorkflowRequest"] == 2


def test_hydrating_a_listed_record_reads_its_detail(oa: OAEmulator, connector: OAConnector) -> None:
    request(oa)
    [listed] = connector.read_page("approvals", ReadWindow(None, None), None, 10).records

    connector.hydrate("approvals", [listed])

    assert connector.client.call_counts()["workflow/getWorkflowRequest"] == 1


def test_read_one_of_a_request_out_of_sight_is_none(connector: OAConnector) -> None:
    assert connector.read_one("approvals", "R999999") is None


def test_an_approvers_decision_is_made_as_that_approver(
    oa: OAEmulator, store: SandboxStore, connector: OAConnector
) -> None:
    request_id = request(oa)

    connector.decide("approvals", request_id, Decision.APPROVE, FIRST, "fine by me")

    [entry] = [e for e in store.ledger("oa") if e.endpoint.endswith("/submitRequest")]
    assert (entry.caller, entry.body["remark"]) == (FIRST, "fine by me")
    now = connector.read_one("approvals", request_id)
    assert now is not None
    assert (now.payload["status"], now.payload["last_operator"]) == ("pending", FIRST)


def test_a_reject_sends_the_request_back(oa: OAEmulator, connector: OAConnector) -> None:
    request_id = request(oa)

    connector.decide("approvals", request_id, Decision.REJECT, FIRST, "")

    now = connector.read_one("approvals", request_id)
    assert now is not None
    assert now.payload["status"] == "rejected"


def test_a_decision_by_someone_whose_turn_it_is_not_is_refused(
    oa: OAEmulator, connector: OAConnector
) -> None:
    request_id = request(oa)

    with pytest.raises(VendorRejected) as refused:
        connector.decide("approvals", request_id, Decision.APPROVE, SECOND, "")

    assert refused.value.code == "NO_PERMISSION"
