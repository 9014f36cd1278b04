"""`syncctl connector check NAME` calls each readable stream once and shows its first records;
a stream that fails is named, with exit 1; an unknown connector is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import syncctl
from tests.connectors.declarative.conftest import ENV, TestAPI


def config_dir(tmp_path: Path, api: TestAPI, description: dict) -> Path:
    entry = {
        "vendor": "rest",
        "base_url": api.base_url,
        "credentials": {"key": {"env": "T_API_KEY"}},
        "declarative": description,
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "connectors.yaml").write_text(
        yaml.safe_dump({"home_oa": entry}), "utf-8"
    )
    return tmp_path / "config"


ITEMS = {
    "auth": {"type": "bearer", "token": "{{ credentials.key }}"},
    "streams": {
        "items": {"id": "$.id", "read": {"path": "bearer/items", "records": "$.items[*]"}},
        "broken": {"id": "$.id", "read": {"path": "basic/items", "records": "$.items[*]"}},
        "todos": {"write": {"create": {"method": "POST", "path": "todos", "json": {"a": "b"}}}},
    },
}


def test_the_check_shows_each_readable_streams_first_records_and_names_the_failed_one(
    tmp_path: Path, api: TestAPI, service_env: dict[str, str]
) -> None:
    env = {**service_env, **ENV, "SYNC_CONFIG_DIR": str(config_dir(tmp_path, api, ITEMS))}

    done = syncctl("connector", "check", "home_oa", "--records", "2", "--json", env=env)

    assert done.returncode == 1, done.stderr
    shown = json.loads(done.stdout)["streams"]
    assert [r["source_id"] for r in shown["items"]["records"]] == ["i000", "i001"]
    assert "http_401" in shown["broken"]["error"]
    assert shown["todos"]["records"] is None
    assert "broken failed" in done.stderr
    assert "k-123" not in done.stdout + done.stderr  # the key never shows


def test_an_unknown_connector_is_one_line_and_exit_2(
    tmp_path: Path, api: TestAPI, service_env: dict[str, str]
) -> None:
    env = {**service_env, **ENV, "SYNC_CONFIG_DIR": str(config_dir(tmp_path, api, ITEMS))}

    done = syncctl("connector", "check", "nobody", env=env)

    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "expected one of: home_oa" in done.stderr
