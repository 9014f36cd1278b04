"""`events:` on a connector: DingTalk's Stream mode and Feishu's long connection are accepted
with their silence limit; a mode that is not the vendor's is refused at load, naming the key."""

from __future__ import annotations

import copy
from typing import Any

from sync_pipeline.config.connector import DEFAULT_SILENCE_S, EventsConfig, EventsMode
from tests.unit.config.conftest import CONNECTORS, ENV, ConfigTree

DINGTALK: dict[str, Any] = {
    "vendor": "dingtalk",
    "base_url": "http://127.0.0.1:18603",
    "credentials": {"app_key": {"env": "DT_KEY"}, "app_secret": {"env": "DT_SECRET"}},
    "options": {"agent_id": 1},
}
FEISHU: dict[str, Any] = {
    "vendor": "feishu",
    "base_url": "http://127.0.0.1:18604",
    "credentials": {"app_id": {"env": "FS_ID"}, "app_secret": {"env": "FS_SECRET"}},
}
MORE_ENV = {**ENV, "DT_KEY": "k", "DT_SECRET": "s", "FS_ID": "i", "FS_SECRET": "s"}


def with_events(tree: ConfigTree, name: str, body: dict[str, Any], events: Any) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors[name] = {**body, "events": events}
    tree.connectors(connectors)


def test_given_dingtalk_on_stream_mode_then_it_loads_with_the_default_silence_limit(tree):
    with_events(tree, "ding", DINGTALK, {"mode": "stream"})

    loaded = tree.load(MORE_ENV).connectors["ding"].events

    assert loaded == EventsConfig(EventsMode.STREAM, DEFAULT_SILENCE_S)


def test_given_a_silence_limit_then_it_is_kept(tree):
    with_events(tree, "ding", DINGTALK, {"mode": "stream", "silence_s": 30})

    loaded = tree.load(MORE_ENV).connectors["ding"].events

    assert loaded is not None
    assert loaded.silence_s == 30


def test_given_feishu_on_its_long_connection_then_it_loads(tree):
    with_events(tree, "fs", FEISHU, {"mode": "long_connection", "silence_s": 60})

    loaded = tree.load(MORE_ENV).connectors["fs"].events

    assert loaded == EventsConfig(EventsMode.LONG_CONNECTION, 60)


def test_given_feishu_on_streams_mode_then_its_own_mode_is_named(tree):
    with_events(tree, "fs", FEISHU, {"mode": "stream"})

    problems = tree.error(MORE_ENV).problems

    expected = "expected mode: long_connection for a feishu connector, not mode: stream"
    assert ("fs.events", expected) in problems


def test_given_a_mode_the_vendor_has_not_then_the_expected_one_is_named(tree):
    with_events(tree, "ding", DINGTALK, {"mode": "long_connection"})

    problems = tree.error(MORE_ENV).problems

    expected = "expected mode: stream for a dingtalk connector, not mode: long_connection"
    assert ("ding.events", expected) in problems


def test_given_events_on_a_vendor_without_a_connection_mode_then_it_is_refused(tree):
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["events"] = {"mode": "stream"}
    tree.connectors(connectors)

    problems = tree.error().problems

    assert (
        "wecom.events",
        "expected no events section for a wecom connector, not mode: stream",
    ) in (problems)
