"""Writes with templated JSON and form bodies and the API's idempotency key; the description's
error mapping turns answers into the errors.py classes."""

from __future__ import annotations

from typing import Any

from sync_pipeline.connectors.base import Connector
from sync_pipeline.errors import RateLimited, TokenExpired, VendorUnavailable
from sync_pipeline.records import (
    Notification,
    NotifyKind,
    ReadWindow,
    WriteOp,
    WriteRequest,
    WriteStatus,
)
from tests.connectors.declarative.conftest import Make, TestAPI

TODOS = {
    "errors": {
        "success_path": "$.code",
        "success_equals": [0],
        "code": "$.code",
        "message": "$.msg",
    },
    "streams": {
        "todos": {
            "write": {
                "dedupe_window_s": 86400,
                "create": {
                    "method": "POST",
                    "path": "todos",
                    "id": "$.data.todo_id",
                    "idempotency": "{{ effect_key }}",
                    "idempotency_header": "Idempotency-Key",
                    "json": {
                        "title": "{{ content.title }}",
                        "owner": "{{ to }}",
                        "tags": "{{ content.tags }}",
                    },
                },
                "update": {
                    "method": "PUT",
                    "path": "todos/{{ target_id }}",
                    "id": "$.data.todo_id",
                    "form": {"title": "{{ content.title }}"},
                },
                "actions": {
                    "approve": {
                        "method": "PUT",
                        "path": "todos/{{ source_id }}",
                        "id": "$.data.todo_id",
                        "form": {"title": "approved by {{ to }}: {{ content.comment }}"},
                    }
                },
            }
        }
    },
}


def todo(title: str, op: WriteOp = WriteOp.CREATE, target: str | None = None) -> WriteRequest:
    note = Notification(NotifyKind.TODO, "u1", {"title": title, "tags": ["a", "b"]})
    return WriteRequest("e" * 64, "src-1", op, note, target)


def test_a_create_sends_the_templated_json_and_returns_the_made_id(
    rest: Make, api: TestAPI
) -> None:
    connector = rest(TODOS)

    result = connector.write("todos", todo("Sign the contract"))

    assert (result.status, result.target_id) == (WriteStatus.DONE, "t1")
    assert api.made["e" * 64] == {
        "todo_id": "t1",
        "title": "Sign the contract",
        "owner": "u1",
        "tags": ["a", "b"],
    }


def test_the_same_write_twice_makes_one_object_through_the_idempotency_key(
    rest: Make, api: TestAPI
) -> None:
    connector = rest(TODOS)

    first = connector.write("todos", todo("Once"))
    again = connector.write("todos", todo("Once"))

    assert first.target_id == again.target_id == "t1"
    assert api.creates == 1
    assert connector.dedupe_window_s("todos") == 86400


def test_an_update_goes_to_the_made_object_with_a_form_body(rest: Make) -> None:
    connector = rest(TODOS)

    result = connector.write("todos", todo("Renamed", WriteOp.UPDATE, "t9"))

    assert (result.status, result.target_id) == (WriteStatus.DONE, "t9")


def test_a_refusal_in_a_200_answer_rejects_the_record_with_the_apis_code(rest: Make) -> None:
    connector = rest(TODOS)

    result = connector.write("todos", todo(""))

    assert result.status is WriteStatus.REJECTED
    assert "4001" in result.reason
    assert "title required" in result.reason


def busy(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "errors": {"rules": rules},
        "streams": {"items": {"id": "$.id", "read": {"path": "busy", "records": "$.items[*]"}}},
    }


def test_a_body_code_meaning_rate_limited_carries_the_wait_the_body_gives(rest: Make) -> None:
    connector: Connector = rest(
        busy(
            [
                {
                    "path": "$.code",
                    "equals": [42900],
                    "action": "rate_limited",
                    "wait_path": "$.wait_s",
                }
            ]
        )
    )

    error = connector.classify(200, {"code": 42900, "wait_s": 7}, {})

    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0


def test_a_body_code_meaning_token_expired_is_token_expired(rest: Make) -> None:
    connector = rest(busy([{"path": "$.code", "equals": [40014], "action": "token_expired"}]))

    assert isinstance(connector.classify(200, {"code": 40014}, {}), TokenExpired)


def test_an_ignored_answer_reads_as_an_empty_page(rest: Make) -> None:
    connector = rest(busy([{"path": "$.code", "equals": [42900], "action": "ignore"}]))

    page = connector.read_page("items", ReadWindow(None, None), None, 10)

    assert page.records == ()
    assert page.next_token is None


def test_a_429_without_a_rule_is_rate_limited_with_its_retry_after(rest: Make) -> None:
    connector = rest(busy([]))

    error = connector.classify(429, {}, {"Retry-After": "3"})

    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


def test_a_decision_goes_to_its_declared_action_endpoint(rest: Make) -> None:
    connector = rest(TODOS)
    note = Notification(NotifyKind.DECISION, "u7", {"decision": "approve", "comment": "ok"})

    result = connector.write("todos", WriteRequest("f" * 64, "t5", WriteOp.UPDATE, note))

    assert (result.status, result.target_id) == (WriteStatus.DONE, "t5"), result.reason


def test_a_body_code_declared_retryable_is_vendor_unavailable(rest: Make) -> None:
    connector = rest(busy([{"path": "$.code", "equals": [50001], "action": "retry"}]))

    error = connector.classify(200, {"code": 50001}, {})

    assert isinstance(error, VendorUnavailable)
    assert error.retryable
