"""A rest connector's description is checked with the rest of the config: each problem names
the file and the key; flows are checked against the streams it declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_pipeline.config.loader import load_config
from sync_pipeline.errors import ConfigError

GOOD = {"streams": {"items": {"id": "$.id", "read": {"path": "items", "records": "$.items[*]"}}}}


def write(tmp_path: Path, description: Any, **entry: Any) -> None:
    body = {
        "vendor": "rest",
        "base_url": "http://127.0.0.1:9",
        "credentials": {},
        "declarative": description,
        **entry,
    }
    (tmp_path / "connectors.yaml").write_text(yaml.safe_dump({"home_oa": body}), "utf-8")


def problems(tmp_path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path, {})
    errors = getattr(refused.value, "errors", [refused.value])
    return [(Path(e.file).name, key, what) for e in errors for key, what in e.problems]


def test_a_good_description_loads_with_its_streams(tmp_path: Path) -> None:
    write(tmp_path, GOOD)

    config = load_config(tmp_path, {})

    assert config.connectors["home_oa"].declarative is not None


def test_an_unknown_paginator_names_its_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "streams": {
                "items": {
                    "id": "$.id",
                    "read": {
                        "path": "items",
                        "records": "$.items[*]",
                        "paginator": {"type": "pages"},
                    },
                }
            }
        },
    )

    [(file, key, _)] = problems(tmp_path)

    assert (file, key) == (
        "connectors.yaml",
        "home_oa.declarative.streams.items.read.paginator.type",
    )


def test_a_bad_jsonpath_and_a_bad_template_are_refused_at_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "streams": {
                "items": {"id": "$.[", "read": {"path": "items/{{ oops", "records": "$.items[*]"}}
            }
        },
    )

    keys = {key for _, key, _ in problems(tmp_path)}

    assert keys == {
        "home_oa.declarative.streams.items.id",
        "home_oa.declarative.streams.items.read.path",
    }


def test_a_description_in_its_own_file_names_that_file_and_its_key(tmp_path: Path) -> None:
    (tmp_path / "home_oa.yaml").write_text(
        yaml.safe_dump({"streams": {"items": {"id": "$.id", "read": {"path": "items"}}}}), "utf-8"
    )
    write(tmp_path, {"file": "home_oa.yaml"})

    assert problems(tmp_path) == [
        ("home_oa.yaml", "streams.items.read.records", "Missing data for required field.")
    ]


def test_a_credential_the_description_reads_must_be_declared(tmp_path: Path) -> None:
    write(tmp_path, {**GOOD, "auth": {"type": "bearer", "token": "{{ credentials.token }}"}})

    [(_, key, what)] = problems(tmp_path)

    assert key == "home_oa.declarative"
    assert "token" in what


def test_a_time_format_that_loses_the_seconds_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "streams": {
                "items": {
                    "id": "$.id",
                    "read": {
                        "path": "items",
                        "records": "$.items[*]",
                        "incremental": {"cursor_field": "$.at", "format": "%Y-%m-%d %H:%M"},
                    },
                }
            }
        },
    )

    [(_, key, _)] = problems(tmp_path)

    assert key == "home_oa.declarative.streams.items.read.incremental.format"


def test_a_webhook_section_without_a_webhook_in_the_description_is_refused(
    tmp_path: Path,
) -> None:
    write(tmp_path, GOOD, webhook={"secret": {"env": "X"}})

    [(_, key, what)] = problems(tmp_path)

    assert key == "home_oa.webhook"
    assert "webhook: in the connector's description" in what


def test_a_webhook_event_on_a_stream_that_cannot_be_reread_is_refused(tmp_path: Path) -> None:
    hook = {
        "signature_header": "X-Sig",
        "timestamp_header": "X-Ts",
        "message": "{{ timestamp }}.{{ body }}",
        "events": [{"stream": "items", "event_id": "$.id", "source_id": "$.item"}],
    }
    write(tmp_path, {**GOOD, "webhook": hook})

    [(_, key, what)] = problems(tmp_path)

    assert key == "home_oa.declarative.webhook.events.0.stream"
    assert "read_one" in what


def test_a_flow_is_checked_against_the_streams_the_description_declares(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "flows").mkdir()
    flow = {
        "source": {"connector": "home_oa", "stream": "approvals"},
        "target": {"connector": "home_oa", "stream": "items"},
        "trigger": {"interval_s": 60},
        "mode": "incremental",
        "cursor_field": "updated_at",
        "mapping": {"fields": {"title": {"from": "title"}}},
    }
    (tmp_path / "flows" / "f.yaml").write_text(yaml.safe_dump(flow), "utf-8")

    found = problems(tmp_path)

    assert ("f.yaml", "source.stream", "expected a stream of the rest connector: items") in found
    assert any(k == "target.stream" and "can only be read" in w for _, k, w in found)


def user_flow(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    flow = {
        "source": {"connector": "home_oa", "stream": "items"},
        "target": {"connector": "home_oa", "stream": "todos"},
        "trigger": {"interval_s": 60},
        "mode": "incremental",
        "cursor_field": "updated_at",
        "mapping": {
            "fields": {"to": {"user": {"from": "owner", "from_system": "oa", "to_system": "oa"}}}
        },
    }
    (tmp_path / "flows" / "f.yaml").write_text(yaml.safe_dump(flow), "utf-8")


TODOS = {"todos": {"write": {"create": {"method": "POST", "path": "todos", "json": {"a": "b"}}}}}


def test_users_are_mapped_by_the_system_the_description_names(tmp_path: Path) -> None:
    write(tmp_path, {**GOOD, "system": "oa", "streams": {**GOOD["streams"], **TODOS}})
    user_flow(tmp_path)

    config = load_config(tmp_path, {})

    assert config.connectors["home_oa"].system == "oa"


def test_without_a_system_a_rest_connectors_users_are_known_by_its_name(tmp_path: Path) -> None:
    write(tmp_path, {**GOOD, "streams": {**GOOD["streams"], **TODOS}})
    user_flow(tmp_path)

    found = problems(tmp_path)

    assert (
        "f.yaml",
        "mapping.fields.to.user.from_system",
        "expected home_oa, the source connector's system",
    ) in found


def test_as_user_is_refused_with_an_auth_type_other_than_login(tmp_path: Path) -> None:
    bearer = {"type": "bearer", "token": "t", "as_user": {"loginName": "{{ as_user }}"}}
    write(tmp_path, {**GOOD, "auth": bearer})

    [(_, key, what)] = problems(tmp_path)

    assert key == "home_oa.declarative.auth.as_user"
    assert "login" in what


def test_as_user_without_any_decide_endpoint_is_refused(tmp_path: Path) -> None:
    login = {
        "type": "login",
        "token_url": "login",
        "token_path": "$.token",
        "as_user": {"loginName": "{{ as_user }}"},
    }
    write(tmp_path, {**GOOD, "auth": login})

    [(_, key, what)] = problems(tmp_path)

    assert key == "home_oa.declarative.auth.as_user"
    assert "decide" in what
