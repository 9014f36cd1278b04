"""What an API that answers only piece by piece needs (Seeyon A8 is one): a hydrate call made
once per item of a list (`each`), a write's look-up before it (`before`, its fields under
`found`), a record read by id whose time is named otherwise (`read_one.cursor_field`), and
epoch times read by the `utc` filter."""

from __future__ import annotations

from typing import Any

from sync_pipeline.config.declarative import TEMPLATES
from sync_pipeline.records import Notification, NotifyKind, Record, WriteOp, WriteRequest
from tests.connectors.declarative.conftest import Make

GROUPS: dict[str, Any] = {
    "streams": {
        "groups": {
            "id": "$.gid",
            "read": {
                "path": "groups",
                "records": "$.groups[*]",
                "paginator": {"type": "page_number", "has_more_path": "$.has_more"},
            },
            "hydrate": [
                {
                    "each": "{{ [record.gid + '-a', record.gid + '-b'] }}",
                    "path": "groups/{{ item }}/members",
                    "fields": {"first_members": "$.members[0].uid"},
                }
            ],
        }
    }
}


def test_a_hydrate_step_with_each_calls_once_per_item_and_lists_the_answers(rest: Make) -> None:
    connector = rest(GROUPS)
    record = Record("g1", "v", "2026-03-01T00:00:00Z", {"gid": "g1"})

    [hydrated] = connector.hydrate("groups", [record])

    assert hydrated.payload["first_members"] == ["g1-a-m1", "g1-b-m1"]


TODO_AFTER_LOOKUP: dict[str, Any] = {
    "streams": {
        "todos": {
            "write": {
                "actions": {
                    "approve": {
                        "method": "PUT",
                        "path": "todos/{{ source_id }}",
                        "before": [
                            {
                                "path": "groups/{{ source_id }}/members",
                                "fields": {"member": "$.members[0].uid"},
                            }
                        ],
                        "id": "$.data.title",
                        "form": {"title": "for {{ found.member }}"},
                    }
                },
            }
        }
    }
}


def test_a_write_s_before_look_up_puts_its_fields_under_found(rest: Make) -> None:
    connector = rest(TODO_AFTER_LOOKUP)
    note = Notification(NotifyKind.TODO, "u1", {"decision": "approve"})

    result = connector.write("todos", WriteRequest("e" * 64, "g7", WriteOp.CREATE, note))

    assert result.target_id == "for g7-m1"


ONE_BY_OFFSET: dict[str, Any] = {
    "streams": {
        "items": {
            "id": "$.id",
            "read": {
                "path": "offset/items",
                "records": "$.items[*]",
                "incremental": {"cursor_field": "$.changed", "format": "epoch_s"},
            },
            "read_one": {
                "path": "offset/items",
                "params": {"offset": "{{ source_id }}", "limit": 1},
                "record": "$.items[0]",
                "cursor_field": "$.epoch",  # the answer by id has no `changed`
            },
        }
    }
}


def test_a_record_read_by_id_takes_its_time_where_read_one_says(rest: Make) -> None:
    connector = rest(ONE_BY_OFFSET)

    found = connector.read_one("items", "3")  # type: ignore[attr-defined]

    assert (found.source_id, found.cursor_value) == ("i003", "2026-03-01T03:00:00Z")


def test_utc_reads_epoch_milliseconds_and_seconds() -> None:
    template = TEMPLATES.from_string(
        "{{ 1772323200000 | utc('epoch_ms') }} {{ 60 | utc('epoch_s') }}"
    )

    assert template.render() == "2026-03-01T00:00:00Z 1970-01-01T00:01:00Z"


def test_from_json_reads_a_json_text_inside_a_field() -> None:
    business = '{"affairId": "-12", "summaryId": "-9007199254740993"}'
    answer = {"data": {"app_bussiness_data": business}}
    template = TEMPLATES.from_string("{{ (answer.data.app_bussiness_data | from_json).summaryId }}")

    assert template.render(answer=answer) == "-9007199254740993"
