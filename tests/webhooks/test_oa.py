"""The OA's signed change webhook from the sandbox's E9 emulator into the webhook service."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


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


def test_prometheus_metrics_count_accepted_deliveries_and_refusals_by_reason(
    sandbox, service
) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    service.wait_rows("oa", 1)
    requests.post(service.endpoint("oa"), data=b"{}", timeout=10)  # unsigned: forged

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(service.prometheus().text)
        for sample in family.samples
        if sample.name.startswith("sync_webhook_")
    }

    assert samples == {
        ("sync_webhook_deliveries_total", (("connector", "sandbox_oa"),)): 1,
        (
            "sync_webhook_refusals_total",
            (("connector", "sandbox_oa"), ("reason", "bad_signature")),
        ): 1,
    }
