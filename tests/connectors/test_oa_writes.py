"""The E9 connector's writes against the OA emulator: unified todos and project comments."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.errors import ConfigError
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteStatus
from tests.connectors.conftest import connector_config, seeded

SENT_AT = "2026-03-02T09:30:00Z"
ANN, BOB = oa_user_id("E00003"), oa_user_id("E00004")


@pytest.fixture
def oa(serve, store: SandboxStore) -> OAEmulator:
    return seeded(serve, OAEmulator, store, approvals=0)


def make_connector(oa: OAEmulator, ctx: ConnectorContext, *, syscode: bool = True) -> OAConnector:
    creds = oa.credentials()
    names = ("appid", "secret", "spk", *(("ofs_syscode",) if syscode else ()))
    config = connector_config(Vendor.OA, oa, {k: creds[k] for k in names}, {"userid": "1"})
    return OAConnector(config, ctx)


@pytest.fixture
def connector(oa: OAEmulator, ctx: ConnectorContext) -> OAConnector:
    return make_connector(oa, ctx)


def todo(to: str, key: str = "k1", **content: Any) -> WriteRequest:
    body = {
        "text": "Budget review moved to Friday",
        "url": "https://chat.example/c/oc_1",
        "workflow": "Feishu message",
        "creator": ANN,
        "sent_at": SENT_AT,
        **content,
    }
    return WriteRequest(
        key,
        "om_1",
        WriteOp.CREATE,
        Notification.from_json({"kind": "todo", "to": to, "content": body}),
    )


def comment(project: str, key: str = "c" * 64, **content: Any) -> WriteRequest:
    body = {"text": "Decision: we ship on Friday", "author": ANN, **content}
    payload = {"kind": "project_comment", "to": project, "content": body}
    return WriteRequest(key, "om_2", WriteOp.CREATE, Notification.from_json(payload))


def todos(store: SandboxStore) -> list[dict[str, Any]]:
    return store.list("oa", "todo")


def progress(store: SandboxStore, project: str) -> list[dict[str, Any]]:
    return store.list("oa", "progress", equals={"projectId": project})


def comments(store: SandboxStore, project: str) -> list[dict[str, Any]]:
    return [c for record in progress(store, project) for c in record["comments"]]


# -- todos -----------------------------------------------------------------------------------
def test_a_todo_is_made_for_its_receiver_from_the_message(connector, store) -> None:
    result = connector.write("todos", todo(BOB))

    assert result.status is WriteStatus.DONE
    [made] = todos(store)
    assert (made["userid"], made["flowid"], made["state"]) == (BOB, "om_1", "todo")
    assert made["requestname"] == "Budget review moved to Friday"
    assert (made["workflowname"], made["creator"]) == ("Feishu message", ANN)
    assert made["pcurl"] == "https://chat.example/c/oc_1"
    assert made["createdatetime"] == "2026-03-02 17:30:00"  # E9's server time, UTC+8


def test_writing_the_same_todo_again_leaves_one_todo(connector, store) -> None:
    connector.write("todos", todo(BOB))

    again = connector.write("todos", todo(BOB))

    assert again.status is WriteStatus.DONE
    assert len(todos(store)) == 1


def test_each_receiver_of_a_message_gets_a_todo_of_their_own(connector, store) -> None:
    connector.write("todos", todo(ANN, key="k1"))
    connector.write("todos", todo(BOB, key="k2"))

    assert sorted(t["userid"] for t in todos(store)) == sorted([ANN, BOB])


def test_a_long_message_is_cut_to_one_line_for_the_todos_title(connector, store) -> None:
    connector.write("todos", todo(BOB, text="line one\nline two " + "x" * 300))

    [made] = todos(store)
    assert made["requestname"].startswith("line one line two x")
    assert len(made["requestname"]) == 200


def test_a_receiver_the_oa_does_not_know_is_refused_for_the_dead_letters(connector, store) -> None:
    result = connector.write("todos", todo("999999"))

    assert result.status is WriteStatus.REJECTED
    assert "999999" in result.reason
    assert todos(store) == []


def test_a_todo_without_a_link_is_refused_before_any_call(connector, store) -> None:
    before = store.calls("oa")

    result = connector.write("todos", todo(BOB, url=None))

    assert result.status is WriteStatus.REJECTED
    assert "url" in result.reason
    assert store.calls("oa") == before


def test_without_the_todo_syscode_a_todo_is_a_config_error(oa, ctx) -> None:
    connector = make_connector(oa, ctx, syscode=False)

    with pytest.raises(ConfigError) as caught:
        connector.write("todos", todo(BOB))

    assert "ofs_syscode" in str(caught.value)


def test_todos_and_project_comments_may_be_resent_when_their_outcome_is_unknown(
    connector,
) -> None:
    assert connector.dedupe_window_s("todos") == float("inf")
    assert connector.dedupe_window_s("project_progress") == float("inf")
    assert connector.dedupe_window_s("approvals") is None


# -- project comments --------------------------------------------------------------------------
def test_a_comment_is_appended_to_the_projects_newest_record_by_its_author(
    connector, store
) -> None:
    newest = max(progress(store, "P001"), key=lambda r: (r["lastModifyTime"], r["recordId"]))

    result = connector.write("project_progress", comment("P001"))

    assert result.status is WriteStatus.DONE
    assert result.target_id == newest["recordId"]
    [made] = comments(store, "P001")
    assert made["authorId"] == ANN
    assert made["content"].startswith("Decision: we ship on Friday\n[ref cccccccccccccccc]")


def test_a_comment_whose_answer_was_lost_is_found_and_not_appended_again(connector, store) -> None:
    first = connector.write("project_progress", comment("P001"))

    again = connector.write("project_progress", comment("P001"))

    assert again.status is WriteStatus.DONE
    assert again.target_id == first.target_id
    assert len(comments(store, "P001")) == 1


def test_two_decisions_with_the_same_text_are_two_comments(connector, store) -> None:
    connector.write("project_progress", comment("P001", key="a" * 64))
    connector.write("project_progress", comment("P001", key="b" * 64))

    assert len(comments(store, "P001")) == 2


def test_a_project_without_progress_records_gets_one_holding_the_comment(
    connector, oa, store
) -> None:
    store.put("oa", "project", "P900", {"projectId": "P900", "projectName": "New", "memberIds": []})

    result = connector.write("project_progress", comment("P900"))

    assert result.status is WriteStatus.DONE
    [record] = progress(store, "P900")
    assert (record["recordId"], record["percent"], record["authorId"]) == (
        result.target_id,
        0,
        ANN,
    )
    assert record["content"].startswith("Decision: we ship on Friday")


def test_a_project_the_oa_does_not_know_is_refused_for_the_dead_letters(connector) -> None:
    result = connector.write("project_progress", comment("P404"))

    assert result.status is WriteStatus.REJECTED
    assert "P404" in result.reason


def test_a_comment_without_text_is_refused(connector, store) -> None:
    result = connector.write("project_progress", comment("P001", text=" "))

    assert result.status is WriteStatus.REJECTED
    assert comments(store, "P001") == []
