"""Each paginator reads every record once and stops where the API says; an API that never
ends its pages is stopped with PagingLoop instead of being read forever."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.connectors.base import Connector
from sync_pipeline.errors import PagingLoop
from sync_pipeline.records import PageTrail, ReadWindow, Record
from tests.connectors.declarative.conftest import Make, TestAPI

EVERYTHING = ReadWindow(None, None)


def read_all(connector: Connector, stream: str = "items", limit: int = 10) -> list[Record]:
    """Page to the end as the pull does, following each token once (records.PageTrail)."""
    trail = PageTrail("rest", stream)
    records: list[Record] = []
    token = None
    for _ in range(100):
        page = connector.read_page(stream, EVERYTHING, token, limit)
        records += page.records
        token = trail.follow(page.next_token)
        if token is None:
            return records
    raise AssertionError("no end after 100 pages")


def stream(read: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"streams": {"items": {"read": read, "id": "$.id", **more}}}


def test_page_numbers_with_has_more_read_every_record_once_with_a_key_in_a_header(
    rest: Make, api: TestAPI
) -> None:
    connector = rest(
        {
            "auth": {
                "type": "api_key",
                "in": "header",
                "name": "X-API-Key",
                "value": "{{ credentials.key }}",
            },
            **stream(
                {
                    "path": "keyed/items",
                    "records": "$.data.list[*]",
                    "paginator": {
                        "type": "page_number",
                        "page_param": "page",
                        "size_param": "size",
                        "has_more_path": "$.data.has_more",
                    },
                }
            ),
        },
        {"key": "T_API_KEY"},
    )

    ids = [r.source_id for r in read_all(connector, limit=10)]

    assert ids == [row["id"] for row in api.items]


def test_offsets_stop_at_the_total(rest: Make, api: TestAPI) -> None:
    connector = rest(
        stream(
            {
                "path": "offset/items",
                "records": "$.items[*]",
                "paginator": {"type": "offset", "total_path": "$.total"},
            }
        )
    )

    assert len(read_all(connector, limit=10)) == len(api.items)


def test_a_cursor_token_is_followed_until_the_api_gives_none(rest: Make, api: TestAPI) -> None:
    connector = rest(
        stream(
            {
                "path": "cursor/items",
                "records": "$.items[*]",
                "paginator": {"type": "cursor", "cursor_path": "$.next", "size_param": "size"},
            }
        )
    )

    assert [r.source_id for r in read_all(connector, limit=7)] == [i["id"] for i in api.items]


def test_a_link_header_leads_to_the_next_page(rest: Make, api: TestAPI) -> None:
    connector = rest(
        stream(
            {
                "path": "link/items",
                "records": "$[*]",
                "paginator": {"type": "link_header", "size_param": "per_page"},
            }
        )
    )

    assert len(read_all(connector, limit=10)) == len(api.items)


def test_a_next_url_in_the_body_leads_to_the_next_page(rest: Make, api: TestAPI) -> None:
    connector = rest(
        stream(
            {
                "path": "next/items",
                "records": "$.results[*]",
                "paginator": {"type": "next_url", "next_url_path": "$.links.next"},
            }
        )
    )

    assert len(read_all(connector)) == len(api.items)


def test_a_cursor_handed_back_twice_stops_the_read_with_paging_loop(rest: Make) -> None:
    connector = rest(
        stream(
            {
                "path": "stuck/items",
                "records": "$.items[*]",
                "paginator": {"type": "cursor", "cursor_path": "$.next"},
            }
        )
    )

    with pytest.raises(PagingLoop):
        read_all(connector, limit=2)


def test_an_api_that_ignores_the_page_number_is_stopped_not_read_forever(rest: Make) -> None:
    connector = rest(
        stream(
            {"path": "deaf/items", "records": "$.items[*]", "paginator": {"type": "page_number"}}
        )
    )

    with pytest.raises(PagingLoop):
        read_all(connector, limit=5)


def test_filters_drop_records_and_fields_map_the_payload(rest: Make) -> None:
    connector = rest(
        stream(
            {
                "path": "offset/items",
                "records": "$.items[*]",
                "paginator": {"type": "offset", "total_path": "$.total"},
                "filters": [{"path": "$.kind", "equals": ["odd"]}],
            },
            fields={"title": "$.name", "label": "{{ record.kind | upper }}-{{ record.id }}"},
        )
    )

    records = read_all(connector)

    assert len(records) == 12
    assert records[0].payload == {"title": "item 1", "label": "ODD-i001"}


def test_children_are_read_for_every_parent_of_every_parent_page(rest: Make) -> None:
    connector = rest(
        {
            "streams": {
                "groups": {
                    "id": "$.gid",
                    "read": {
                        "path": "groups",
                        "records": "$.groups[*]",
                        "paginator": {"type": "page_number", "has_more_path": "$.has_more"},
                    },
                },
                "members": {
                    "id": "$.uid",
                    "read": {
                        "path": "groups/{{ parent }}/members",
                        "records": "$.members[*]",
                        "parent": {"stream": "groups", "key": "$.gid"},
                        "paginator": {"type": "page_number"},
                    },
                },
            }
        }
    )

    ids = [r.source_id for r in read_all(connector, "members", limit=1)]

    assert ids == ["g1-m1", "g1-m2", "g2-m1", "g2-m2", "g3-m1", "g3-m2"]
