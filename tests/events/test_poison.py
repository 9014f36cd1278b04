"""Poison records (issue 9, point 1): an approval whose content PostgreSQL or UTF-8 refuses as
it is (a NUL, a lone surrogate) syncs with those code points replaced by U+FFFD, on the pull
and on the webhook path, and never stops the flow.

The steps run in this process, as the tasks call them, against the sandbox server, this test's
PostgreSQL schema and Redis db, with the shipped config (tests/events/approval_scene.py). What
a failed run or event then says (point 9) is here too.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.events.approvals import wanting
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import Notification, WriteOp, WriteRequest
from sync_pipeline.state import cursors, deadletters, effects, idmap, runs
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.untrusted import bounded_id
from tests.conftest import next_second
from tests.events.approval_scene import (
    DINGTALK_FLOW,
    OA,
    approval_changed,
    deliver,
    entries,
    new_approval,
    oa_id,
    outcome,
    wecom_id,
    wecom_sends,
)

TODO_FLOW = "feishu_important_messages_to_oa_todos"  # its target: the OA's unified todos
DECISION_FLOW = "feishu_project_decisions_to_oa"  # its target: comments on OA projects
NUL = "\x00"
KEPT_AS = "\ufffd"  # what a code point PostgreSQL refuses becomes (sync_pipeline/untrusted.py)


def poisoned_title() -> tuple[str, str]:
    """(a title with a NUL in it, the title as it is synced), unique to the test."""
    tag = uuid.uuid4().hex[:8]
    return f"a{NUL}b {tag}", f"a{KEPT_AS}b {tag}"


def pull(rt: Runtime, flow: str) -> runs.Run:
    run_id = steps.run_inline(rt, flow, "test")
    assert run_id is not None
    with rt.engine.connect() as conn:
        run = runs.get(conn, run_id)
    assert run is not None
    return run


def link(rt: Runtime, request_id: str, target: tuple[str, str]) -> idmap.Link | None:
    with rt.engine.connect() as conn:
        found = idmap.lookup(conn, ("oa", "approvals"), target, [request_id])
    return found.get(request_id)


def test_given_an_approval_titled_with_a_nul_then_the_pull_sends_its_card_once(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    title, synced = poisoned_title()
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"], title=title)
    next_second()

    run = pull(rt, DINGTALK_FLOW)

    assert run.status is runs.RunStatus.SUCCEEDED, run.error
    assert len(entries(sandbox, "dingtalk", synced)) == 1
    kept = link(rt, request_id, ("dingtalk", "messages"))
    assert kept is not None
    assert (kept.payload or {})["title"] == synced


def test_given_a_nul_approval_then_the_cursor_moves_and_a_later_approval_syncs(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    title, _ = poisoned_title()
    new_approval(sandbox, "E00010", ["E00011"], title=title)
    next_second()
    first = pull(rt, DINGTALK_FLOW)
    _, later = new_approval(sandbox, "E00010", ["E00011"])
    next_second()

    second = pull(rt, DINGTALK_FLOW)

    assert (first.status, second.status) == (runs.RunStatus.SUCCEEDED,) * 2
    assert first.cursor_after is not None
    assert second.cursor_after is not None
    assert second.cursor_after > first.cursor_after
    with rt.engine.connect() as conn:
        assert cursors.get(conn, DINGTALK_FLOW).cursor == second.cursor_after
    assert len(entries(sandbox, "dingtalk", later)) == 1


def test_given_an_oa_change_webhook_for_a_nul_approval_then_the_card_is_sent_once_and_mapped(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    title, synced = poisoned_title()
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"], title=title)
    event = approval_changed(request_id)

    status = deliver(rt, event)

    assert status is EventStatus.DONE, outcome(rt, event).error
    assert wecom_sends(sandbox, synced) == [("card", wecom_id("E00011"))]
    kept = link(rt, request_id, ("wecom", "messages"))
    assert kept is not None
    assert kept.target_id
    with rt.engine.connect() as conn:
        assert deadletters.open_letters(conn, "approvals_to_wecom") == []


# -- point 9: what a failed run or event says ----------------------------------------------------
SQL_WORDS = ("INSERT", "SELECT", "UPDATE", "[SQL", "parameters", "%(")


def refuse(rt: Runtime, table: str, column: str, marker: str) -> None:
    """PostgreSQL refuses rows of `table` whose `column` holds `marker`, in this test's schema
    only: a write failure the pipeline cannot clean away, for what the operator is then told."""
    with rt.engine.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT refused_in_test"
            f" CHECK ({column}::text NOT LIKE '%%{marker}%%')"
        )


def assert_says_why_without_sql_or_payload(error: str | None, marker: str) -> None:
    assert error
    assert "refused_in_test" in error  # the reason, named
    assert marker not in error  # no payload excerpt
    assert not [word for word in SQL_WORDS if word in error], error


def test_given_postgresql_refuses_a_page_then_the_failed_pull_says_why_without_sql_or_payload(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    marker = f"private-{uuid.uuid4().hex[:8]}"
    refuse(rt, "pages", "records", marker)
    new_approval(sandbox, "E00010", ["E00011"], title=f"Salary {marker}")
    next_second()
    with pytest.raises(sa.exc.IntegrityError) as refused:
        steps.run_inline(rt, DINGTALK_FLOW, "test")
    with rt.engine.connect() as conn:
        running = runs.latest(conn, DINGTALK_FLOW)
    assert running is not None

    steps.fail_run(rt, running.id, refused.value)  # as the pull task does

    with rt.engine.connect() as conn:
        run = runs.get(conn, running.id)
    assert run is not None
    assert run.status is runs.RunStatus.FAILED
    assert_says_why_without_sql_or_payload(run.error, marker)


def test_given_postgresql_refuses_an_events_write_then_its_errors_say_why_without_sql_or_payload(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    marker = f"private-{uuid.uuid4().hex[:8]}"
    refuse(rt, "id_map", "payload", marker)
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"], title=f"Salary {marker}")
    event = approval_changed(request_id)

    with pytest.raises(sa.exc.IntegrityError):  # the task fails, as Celery then records
        deliver(rt, event)

    assert outcome(rt, event).status is EventStatus.FAILED
    assert_says_why_without_sql_or_payload(outcome(rt, event).error, marker)
    with rt.engine.connect() as conn:
        latest = [runs.latest(conn, flow.name, webhook=True) for flow in wanting(rt, OA)]
    failed = [run for run in latest if run is not None and run.status is runs.RunStatus.FAILED]
    assert failed
    assert_says_why_without_sql_or_payload(failed[0].error, marker)


# -- one record never stops the others ------------------------------------------------------------
def copy_approval(store: SandboxStore, request_id: str, new_id: str) -> None:
    """An approval with an id the OA's API would never choose: a copy of one it made, put
    straight into the OA emulator's store under `new_id`."""
    body = store.get("oa", "approval", request_id)
    assert body is not None
    store.put("oa", "approval", new_id, {**body, "requestId": new_id})


def open_letters(rt: Runtime, flow: str, source_id: str) -> list[deadletters.DeadLetter]:
    with rt.engine.connect() as conn:
        return [d for d in deadletters.open_letters(conn, flow) if d.source_id == source_id]


def test_given_an_approval_whose_id_is_too_long_to_key_then_it_is_one_dead_letter(
    rt: Runtime, sandbox: SandboxClient, sandbox_store: SandboxStore
) -> None:
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"])
    long_id = "R" + "9" * 3000  # past what a btree row holds
    copy_approval(sandbox_store, request_id, long_id)
    _, later = new_approval(sandbox, "E00010", ["E00011"])
    next_second()

    run = pull(rt, DINGTALK_FLOW)

    assert run.status is runs.RunStatus.SUCCEEDED, run.error
    [letter] = open_letters(rt, DINGTALK_FLOW, bounded_id(long_id))
    assert "3001 characters" in letter.reason
    assert letter.error_class == "RecordError"
    assert len(entries(sandbox, "dingtalk", later)) == 1


def test_given_an_approval_whose_id_holds_a_nul_then_it_is_one_dead_letter(
    rt: Runtime, sandbox: SandboxClient, sandbox_store: SandboxStore
) -> None:
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"])
    copy_approval(sandbox_store, request_id, f"{request_id}{NUL}")
    _, later = new_approval(sandbox, "E00010", ["E00011"])
    next_second()

    run = pull(rt, DINGTALK_FLOW)

    assert run.status is runs.RunStatus.SUCCEEDED, run.error
    [letter] = open_letters(rt, DINGTALK_FLOW, f"{request_id}{KEPT_AS}")
    assert "cannot be re-read by that id" in letter.reason
    assert len(entries(sandbox, "dingtalk", later)) == 1


def test_given_an_approval_whose_details_the_oa_refuses_then_it_is_one_dead_letter(
    rt: Runtime, sandbox: SandboxClient, sandbox_store: SandboxStore
) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    copy_approval(sandbox_store, request_id, "\u2003")  # E9 strips it: "requestId is required"
    next_second()

    run = pull(rt, DINGTALK_FLOW)

    assert run.status is runs.RunStatus.SUCCEEDED, run.error
    [letter] = open_letters(rt, DINGTALK_FLOW, "\u2003")
    assert letter.reason.startswith("its details could not be read: oa PARAM_ERROR")
    assert letter.error_class == "VendorRejected"  # the class of the error the OA's refusal is
    assert len(entries(sandbox, "dingtalk", title)) == 1  # the original, not the copy


def todo(effect_key: str, **content: str) -> WriteRequest:
    return WriteRequest(
        effect_key=effect_key,
        source_id=f"msg-{effect_key[:8]}",
        op=WriteOp.CREATE,
        notification=Notification.from_json(
            {"kind": "todo", "to": oa_id("E00011"), "content": content}
        ),
    )


def effect(rt: Runtime, key: str) -> effects.Effect:
    with rt.engine.connect() as conn:
        return effects.get(conn, [key])[key]


def webhook_run(rt: Runtime, flow: str) -> int:
    with rt.engine.begin() as conn:
        return runs.start_webhook(conn, flow)


def test_given_a_write_that_raises_before_any_request_left_then_the_effect_failed_and_is_a_letter(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    flow = rt.flow(TODO_FLOW)
    key = uuid.uuid4().hex
    request = todo(key, text="Call back", url="https://oa.example/t", sent_at="not a time")

    made = steps.make_effects(rt, flow, [request], webhook_run(rt, flow.name))

    assert (made.written, made.dead) == (0, 1)
    assert effect(rt, key).status is effects.EffectStatus.FAILED
    [letter] = open_letters(rt, flow.name, request.source_id)
    assert letter.reason.startswith("unexpected ValueError")
    assert entries(sandbox, "oa", request.source_id) == []


def test_given_a_write_that_raises_after_a_request_left_then_the_effect_is_parked_as_unknown(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    flow = rt.flow(DECISION_FLOW)
    key = uuid.uuid4().hex
    # The comment's author is sent RSA-encrypted, after the project's records were read: an
    # author too long for the key fails there, with a request already sent.
    request = WriteRequest(
        effect_key=key,
        source_id=f"msg-{key[:8]}",
        op=WriteOp.CREATE,
        notification=Notification.from_json(
            {
                "kind": "project_comment",
                "to": "P001",
                "content": {"text": f"Decided {key[:8]}", "author": "9" * 1000},
            }
        ),
    )

    made = steps.make_effects(rt, flow, [request], webhook_run(rt, flow.name))

    assert made.dead == 1
    assert effect(rt, key).status is effects.EffectStatus.UNKNOWN
    [letter] = open_letters(rt, flow.name, request.source_id)
    assert letter.reason.startswith("outcome unknown after unexpected ValueError")
    assert "check the target, then replay" in letter.reason
