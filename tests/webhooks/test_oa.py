"""The OA's signed change webhook from the sandbox's E9 emulator into the webhook service."""

from __future__ import annotations

import requests


def test_an_approval_decided_in_the_oa_is_recorded_once_and_enqueued_once(sandbox, service) -> None:
    created = sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    service.wait_rows("oa", 1)  # "created" fires the webhook too

    sandbox.transition(created["requestId"], "approve", by="E00002")

    rows = service.wait_rows("oa", 2)
    assert [r.event.data["status"] for r in rows] == ["pending", "approved"]
    assert {r.event.data["source_id"] for r in rows} == {created["requestId"]}
    assert all(r.event.kind.value == "approval_changed" for r in rows)
    assert service.wait_enqueued(2) == 2


def test_metrics_count_accepted_deliveries_and_refusals(sandbox, service) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    service.wait_rows("oa", 1)
    requests.post(service.endpoint("oa"), data=b"{}", timeout=10)  # unsigned: forged

    figures = service.metrics().json()

    assert figures == {
        "connectors": [
            {
                "connector": "sandbox_oa",
                "accepted": 1,
                "queued": 1,
                "duplicates": 0,
                "refused": {"bad_signature": 1},
            }
        ]
    }
