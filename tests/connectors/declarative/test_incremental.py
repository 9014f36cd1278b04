"""A date-time cursor in the API's format and zone, a window split into slices no longer than
the API takes, a lookback; a cursor declared wrong is refused, never guessed."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.errors import ConfigError
from sync_pipeline.records import ReadWindow
from tests.connectors.declarative.conftest import Make, TestAPI

DAY = 86400.0


def events(incremental: dict[str, Any], path: str = "events") -> dict[str, Any]:
    return {
        "streams": {
            "items": {
                "id": "$.id",
                "read": {
                    "path": path,
                    "records": "$.items[*]",
                    "incremental": {
                        "format": "%Y-%m-%d %H:%M:%S",
                        "timezone": "Asia/Shanghai",
                        "start_param": "from",
                        "end_param": "to",
                        **incremental,
                    },
                },
            }
        }
    }


def window(hours_from: int, hours_to: int) -> ReadWindow:
    return ReadWindow(
        f"2026-03-01T{hours_from:02d}:00:00Z",
        f"2026-03-{1 + hours_to // 24:02d}T{hours_to % 24:02d}:00:00Z",
    )


def test_the_window_is_sent_in_the_apis_zone_and_format_and_cursors_come_back_in_utc(
    rest: Make, api: TestAPI
) -> None:
    connector = rest(events({"cursor_field": "$.updated"}))

    page = connector.read_page("items", window(2, 5), None, 50)

    assert api.windows == [("2026-03-01 10:00:00", "2026-03-01 13:00:00")]
    assert [r.cursor_value for r in page.records] == [
        "2026-03-01T02:00:00Z",
        "2026-03-01T03:00:00Z",
        "2026-03-01T04:00:00Z",
    ]


def test_a_window_longer_than_the_api_takes_is_read_in_slices(rest: Make, api: TestAPI) -> None:
    connector = rest(events({"cursor_field": "$.updated", "max_window_s": 6 * 3600}))
    records = []
    token = None
    while True:
        page = connector.read_page(
            "items", ReadWindow("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"), token, 50
        )
        records += page.records
        token = page.next_token
        if token is None:
            break

    assert len(api.windows) == 4
    assert api.windows[0] == ("2026-03-01 08:00:00", "2026-03-01 14:00:00")
    assert api.windows[-1] == ("2026-03-02 02:00:00", "2026-03-02 08:00:00")
    assert len(records) == 24


def test_lookback_widens_the_start_of_each_read(rest: Make, api: TestAPI) -> None:
    connector = rest(events({"cursor_field": "$.updated", "lookback_s": 3600}))

    connector.read_page("items", window(5, 6), None, 50)

    assert api.windows == [("2026-03-01 12:00:00", "2026-03-01 14:00:00")]


def test_a_cursor_in_another_format_than_declared_is_refused_naming_the_key(
    rest: Make,
) -> None:
    connector = rest(events({"cursor_field": "$.epoch"}))

    with pytest.raises(ConfigError) as refused:
        connector.read_page("items", window(2, 5), None, 50)

    assert "streams.items.read.incremental.cursor_field" in str(refused.value)


def test_an_api_that_ignores_the_window_is_refused_rather_than_moving_the_cursor(
    rest: Make,
) -> None:
    connector = rest(events({"cursor_field": "$.updated"}, "unfiltered/events"))

    with pytest.raises(ConfigError, match="inside the window"):
        connector.read_page("items", window(2, 5), None, 50)
