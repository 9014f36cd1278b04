"""The Feishu connector's hydrate of chat messages: a group message learns its chat group."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.server import FaultCache, FaultInjector
from sync_pipeline.records import Record
from tests.connectors.conftest import connector_config, seeded

CHATS = "GET /open-apis/im/v1/chats"


class CountedFeishu(FeishuEmulator):
    """The emulator behind the sandbox server's call counter, so store.calls sees each call."""

    def routes(self) -> list[BaseRoute]:
        app = Starlette(routes=super().routes())
        return [Mount("", app=FaultInjector(app, self, FaultCache(self.store)))]


@pytest.fixture
def feishu(serve, store: SandboxStore) -> FeishuEmulator:
    return seeded(serve, CountedFeishu, store, approvals=0)


@pytest.fixture
def connector(feishu: FeishuEmulator, ctx: ConnectorContext) -> FeishuConnector:
    creds = feishu.credentials()
    secrets = {"app_id": creds["app_id"], "app_secret": creds["app_secret"]}
    return FeishuConnector(connector_config(Vendor.FEISHU, feishu, secrets), ctx)


def chat_named(store: SandboxStore, name: str) -> dict[str, Any]:
    return store.list("feishu", "chat", equals={"name": name})[0]


def message(message_id: str, group: str | None) -> Record:
    payload = {"id": message_id, "group": group, "chat": group or "oc_p2p", "text": "hi"}
    return Record(message_id, "v", "2026-03-02T09:30:00Z", payload)


def calls(store: SandboxStore) -> int:
    return sum(n for key, n in store.calls("feishu").items() if CHATS in key)


def test_a_project_groups_message_carries_the_groups_name_and_description(connector, store) -> None:
    chat = chat_named(store, "Project 1 group")

    [hydrated] = connector.hydrate("messages", [message("om_1", chat["chat_id"])])

    assert hydrated.payload["group_info"] == {
        "id": chat["chat_id"],
        "name": "Project 1 group",
        "description": "Project P001",
    }
    assert hydrated.payload["text"] == "hi"


def test_a_batch_of_group_messages_lists_the_chats_once(connector, store) -> None:
    one, two = chat_named(store, "Project 1 group"), chat_named(store, "Engineering team")

    hydrated = connector.hydrate(
        "messages", [message("om_1", one["chat_id"]), message("om_2", two["chat_id"])]
    )

    assert [r.payload["group_info"]["name"] for r in hydrated] == [
        "Project 1 group",
        "Engineering team",
    ]
    assert calls(store) == 1


def test_a_direct_message_is_left_as_it_is_without_a_call(connector, store) -> None:
    record = message("om_1", None)

    assert connector.hydrate("messages", [record]) == [record]
    assert calls(store) == 0


def test_a_group_the_app_is_not_in_has_no_group_info(connector) -> None:
    [hydrated] = connector.hydrate("messages", [message("om_1", "oc_unknown")])

    assert hydrated.payload["group_info"] is None


def test_a_message_that_knows_its_group_already_costs_no_call(connector, store) -> None:
    chat = chat_named(store, "Project 1 group")
    [once] = connector.hydrate("messages", [message("om_1", chat["chat_id"])])

    again = connector.hydrate("messages", [once])

    assert again == [once]
    assert calls(store) == 1
