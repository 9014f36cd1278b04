"""The E9 connector reads back what we may have made (connectors.base.LooksUpEffects), against
the OA emulator: a decision by its approver at its node is in the request's sign log; a
project comment carries its reference. Nothing is found that was not made."""

from __future__ import annotations

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import (
    ConnectorContext,
    Decision,
    DecisionRequest,
    LooksUpEffects,
)
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.records import Notification, NotifyKind, WriteOp, WriteRequest, WriteStatus
from tests.connectors.conftest import connector_config, seeded

APPLICANT, FIRST, SECOND = oa_user_id("E00010"), oa_user_id("E00011"), oa_user_id("E00012")
KEY = "d" * 64


@pytest.fixture
def oa(serve, store: SandboxStore) -> OAEmulator:
    return seeded(serve, OAEmulator, store, approvals=0)


@pytest.fixture
def connector(oa: OAEmulator, ctx: ConnectorContext) -> OAConnector:
    creds = oa.credentials()
    given = {k: creds[k] for k in ("appid", "secret", "spk")}
    return OAConnector(connector_config(Vendor.OA, oa, given, {"userid": "1"}), ctx)


def decision_of(connector: OAConnector, oa: OAEmulator, decision: Decision) -> WriteRequest:
    """FIRST deciding a new request at its first node."""
    request_id = str(oa.create_approval(APPLICANT, [FIRST, SECOND], title="Trip")["requestId"])
    now = connector.read_one("approvals", request_id)
    assert now is not None
    node = str(now.payload["node"])
    return DecisionRequest(request_id, decision, FIRST, node, "ok").request(KEY)


def made(connector: OAConnector, request: WriteRequest) -> None:
    decision = DecisionRequest.of(request)
    connector.decide("approvals", decision.source_id, decision.decision, FIRST, "ok")


def test_the_oa_connector_looks_up_decisions_and_project_comments_only(connector) -> None:
    assert isinstance(connector, LooksUpEffects)
    assert [connector.looks_up(s) for s in ("approvals", "project_progress", "todos")] == [
        True,
        True,
        False,
    ]


def test_a_decision_the_oa_made_is_found_done_as_its_approver(oa, connector) -> None:
    request = decision_of(connector, oa, Decision.APPROVE)
    made(connector, request)

    found = connector.look_up("approvals", request)

    assert found is not None
    assert (found.status, found.target_id) == (WriteStatus.DONE, FIRST)
    assert found.extra["at"].endswith("Z")


def test_a_decision_still_theirs_to_make_is_not_found(oa, connector) -> None:
    request = decision_of(connector, oa, Decision.APPROVE)

    assert connector.look_up("approvals", request) is None


def test_a_rejection_is_not_taken_for_the_approval_it_was_not(oa, connector) -> None:
    approve = decision_of(connector, oa, Decision.APPROVE)
    decision = DecisionRequest.of(approve)
    connector.decide("approvals", decision.source_id, Decision.REJECT, FIRST, "no")

    found = connector.look_up("approvals", approve)

    assert found is not None
    assert found.status is WriteStatus.REJECTED
    assert "moved on without this decision" in found.reason


def test_a_project_comment_is_found_by_its_reference_and_only_once_made(connector) -> None:
    payload = Notification(NotifyKind.PROJECT_COMMENT, "P001", {"text": "We ship Friday"})
    comment = WriteRequest("c" * 64, "om_9", WriteOp.CREATE, payload)
    assert connector.look_up("project_progress", comment) is None
    written = connector.write("project_progress", comment)

    found = connector.look_up("project_progress", comment)

    assert found is not None
    assert (found.status, found.target_id) == (WriteStatus.DONE, written.target_id)
