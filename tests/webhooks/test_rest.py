"""A declarative connector's change webhook, verified and decoded as its description says
(here the e-cology example's, checked against the OA's own signature function)."""

from __future__ import annotations

import json
import time

import pytest

from sync_pipeline.config.connector import Secret, Vendor
from sync_pipeline.config.loader import load_config
from sync_pipeline.errors import Refused
from sync_pipeline.records import EventKind
from sync_pipeline.webhooks import rest
from sync_pipeline.webhooks.delivery import Endpoint, Incoming
from sync_pipeline.webhooks.verify import oa_signature
from tests.conftest import ROOT

SECRET = "hook-secret"
SPEC = load_config(ROOT / "config" / "examples" / "declarative", environment=False)
HOOK = SPEC.connectors["sandbox_oa_declarative"].declarative.webhook  # type: ignore[union-attr]
ENDPOINT = Endpoint("sandbox_oa", Vendor.REST, {"secret": Secret(SECRET)}, 300.0, HOOK)


def delivery(payload: dict, signature: str | None = None, at: float | None = None) -> Incoming:
    body = json.dumps(payload, ensure_ascii=False).encode()
    timestamp = str(int(at or time.time()))
    sign = signature or oa_signature(SECRET, timestamp, body)
    headers = {"x-oa-timestamp": timestamp, "x-oa-signature": sign}
    return Incoming("POST", {}, headers, body, time.time())


CHANGE = {
    "event": "request.approved",
    "eventId": "ev-1",
    "requestId": "8812",
    "status": "归档",
    "lastOperateTime": "2026-03-02 09:30:00",
}


def test_a_signed_change_becomes_an_approval_changed_event_of_its_request() -> None:
    accepted = rest.receive(ENDPOINT, delivery(CHANGE))

    assert accepted.event is not None
    assert accepted.event.kind is EventKind.APPROVAL_CHANGED
    assert (accepted.event.event_id, accepted.event.data["source_id"]) == ("ev-1", "8812")
    assert accepted.event.data["status"] == "归档"


def test_a_forged_signature_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        rest.receive(ENDPOINT, delivery(CHANGE, signature="0" * 64))

    assert refused.value.status == 401


def test_a_delivery_signed_too_long_ago_is_refused_as_stale() -> None:
    with pytest.raises(Refused, match="window"):
        rest.receive(ENDPOINT, delivery(CHANGE, at=time.time() - 3600))


def test_a_delivery_of_an_undeclared_type_is_acknowledged_and_not_handled() -> None:
    accepted = rest.receive(ENDPOINT, delivery({**CHANGE, "event": "user.created"}))

    assert accepted.event is None
