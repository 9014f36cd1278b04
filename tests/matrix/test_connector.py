"""The Matrix connector against a real Synapse: cards in each approver's direct room, sent
once per effect key (the txnId), HTML escaped, edited in place; M_LIMIT_EXCEEDED with its wait;
reactions and replies on our cards read back with /sync as decisions."""

from __future__ import annotations

import uuid

import pytest

from sync_pipeline.connectors.base import Decision
from sync_pipeline.connectors.matrix import MatrixConnector, parse_target
from sync_pipeline.pipeline import matrix_sync
from sync_pipeline.records import CardAction, Notification, WriteOp, WriteRequest, WriteStatus
from tests.matrix.conftest import MakeConnector
from tests.matrix.synapse import MatrixUser, Synapse

pytestmark = pytest.mark.slow


def person(synapse: Synapse, prefix: str = "p") -> MatrixUser:
    return synapse.register(f"{prefix}{uuid.uuid4().hex[:10]}")


def card(to: str, key: str | None = None, title: str = "Leave request") -> WriteRequest:
    content = {"title": title, "text": "Waiting for your decision", "status": "pending"}
    return WriteRequest(
        effect_key=key or uuid.uuid4().hex,
        source_id="8812",
        op=WriteOp.CREATE,
        notification=Notification.from_json({"kind": "card", "to": to, "content": content}),
    )


def write_cards(connector: MatrixConnector, to: MatrixUser, count: int) -> None:
    for _ in range(count):
        connector.write("messages", card(to.user_id))


def sent(synapse: Synapse, who: MatrixUser, room_id: str) -> list[dict]:
    return [
        e
        for e in synapse.messages(who, room_id)
        if e["type"] == "m.room.message" and "m.new_content" not in e["content"]
    ]


def joined(synapse: Synapse, who: MatrixUser) -> str:
    [room_id] = synapse.invited_rooms(who)
    synapse.join(who, room_id)
    return room_id


def test_a_card_reaches_the_approver_in_a_direct_room_with_its_source_id(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)

    result = connector.write("messages", card(approver.user_id))

    assert result.status is WriteStatus.DONE
    room_id = joined(synapse, approver)
    [message] = sent(synapse, approver, room_id)
    assert parse_target(result.target_id or "") == (room_id, message["event_id"])
    assert message["sender"] == bot.user_id
    assert message["content"]["org.sync_pipeline.source_id"] == "8812"
    assert "React ✅ to approve" in message["content"]["body"]


def test_outside_text_is_escaped_in_the_html_body(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    title = '<a href="https://evil.example">click</a> & <b>'

    result = make_connector(bot).write("messages", card(approver.user_id, title=title))

    room_id, _ = parse_target(result.target_id or "")  # type: ignore[misc]
    [message] = sent(synapse, bot, room_id)
    html = message["content"]["formatted_body"]
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;click&lt;/a&gt; &amp; &lt;b&gt;" in html
    assert '<a href="https://evil' not in html


def test_a_card_update_is_an_edit_of_the_card(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    made = connector.write("messages", card(approver.user_id))
    content = {"title": "Leave request", "status": "approved", "status_label": "Approved by Ann"}
    update = WriteRequest(
        uuid.uuid4().hex,
        "8812",
        WriteOp.UPDATE,
        Notification.from_json({"kind": "update_card", "to": approver.user_id, "content": content}),
        target_id=made.target_id,
    )

    result = connector.write("messages", update)

    room_id, card_id = parse_target(made.target_id or "")  # type: ignore[misc]
    [edit] = [e for e in synapse.messages(bot, room_id) if "m.new_content" in e["content"]]
    assert result.status is WriteStatus.DONE
    assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": card_id}
    assert "Approved by Ann" in edit["content"]["m.new_content"]["body"]
    assert "React" not in edit["content"]["m.new_content"]["body"]


def test_a_throttled_send_waits_as_told_and_is_made_once(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    room_id = connector.room_for(approver.user_id)
    synapse.limit(bot, per_second=1, burst=1)

    results = [connector.write("messages", card(approver.user_id)) for _ in range(3)]

    assert [r.status for r in results] == [WriteStatus.DONE] * 3
    assert len(sent(synapse, bot, room_id)) == 3
    assert connector.client.call_counts()["send"] > 3  # some were refused, then resent


def test_a_second_connector_finds_the_direct_room_the_first_made(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)

    first = make_connector(bot).room_for(approver.user_id)
    second = make_connector(bot).room_for(approver.user_id)

    assert first == second


# -- decisions read back with /sync ---------------------------------------------------------------
def presses(connector: MatrixConnector, since: str | None) -> tuple[list[CardAction], str]:
    synced = connector.sync(since)
    events = list(matrix_sync.decode(connector, "test_matrix", synced, since))
    return [CardAction.from_json(e.data) for e in events], str(synced["next_batch"])


def test_a_reaction_and_a_reply_on_a_card_are_read_as_decisions_once(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    made = connector.write("messages", card(approver.user_id))
    room_id, card_id = parse_target(made.target_id or "")  # type: ignore[misc]
    synapse.join(approver, room_id)
    _, since = presses(connector, None)

    synapse.react(approver, room_id, card_id, "✅")
    synapse.reply(approver, room_id, card_id, "> <@bot> Leave request\n\nreject too long")
    synapse.react(approver, room_id, card_id, "🎉")  # no decision
    synapse.send(approver, room_id, "m.room.message", {"msgtype": "m.text", "body": "approve"})
    found, since = presses(connector, since)

    assert [(p.action, p.comment, p.user_id) for p in found] == [
        (Decision.APPROVE.value, "", approver.user_id),
        (Decision.REJECT.value, "too long", approver.user_id),
    ]
    assert {p.source_id for p in found} == {"8812"}
    assert {p.card["card"] for p in found} == {made.target_id}
    assert presses(connector, since)[0] == []


def test_given_more_events_than_a_sync_gives_the_cut_part_is_read_from_messages(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    made = connector.write("messages", card(approver.user_id))
    room_id, card_id = parse_target(made.target_id or "")  # type: ignore[misc]
    synapse.join(approver, room_id)
    _, since = presses(connector, None)
    connector.sync_limit = 2

    synapse.react(approver, room_id, card_id, "✅")
    for n in range(5):
        synapse.send(approver, room_id, "m.room.message", {"msgtype": "m.text", "body": f"{n}"})
    found, _ = presses(connector, since)

    assert [p.action for p in found] == [Decision.APPROVE.value]


def test_a_reaction_on_a_message_that_is_not_our_card_decides_nothing(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    made = connector.write("messages", card(approver.user_id))
    room_id, _ = parse_target(made.target_id or "")  # type: ignore[misc]
    synapse.join(approver, room_id)
    _, since = presses(connector, None)
    theirs = synapse.send(approver, room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})

    synapse.react(approver, room_id, theirs, "✅")

    assert presses(connector, since)[0] == []


def test_the_directory_lists_the_configured_people_with_their_employee_numbers(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, someone = person(synapse, "bot"), person(synapse, "e")
    connector = make_connector(bot, users=[someone.user_id], employee_no_from_localpart="upper")

    [user] = connector.list_users()

    assert user.user_id == someone.user_id
    assert user.employee_no == someone.user_id[1:].partition(":")[0].upper()
