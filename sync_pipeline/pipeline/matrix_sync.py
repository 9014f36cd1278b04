"""Decisions made in Matrix rooms, read with /sync and recorded as card_action events.

Matrix calls nobody back (an application service would need the homeserver's own config), so
Beat runs `events.matrix_sync` every SYNC_EVERY_S for each Matrix connector that an enabled
flow writes to. One run reads the bot's rooms from the since-token it kept
(`flow_cursors`, key "matrix_sync:<connector>"), turns each reaction or reply on one of our
cards into a card_action event (connectors/matrix.py, buttons/matrix.py), and records the
events and the new token in one transaction, exactly as the webhook service records a
delivery (`inbound.record`, once per Matrix event id); then each recorded row gets its
`events.handle` task, and the pipeline's card handling judges and applies the press
(pipeline/events/cards.py: only a current approver's decision counts). Two runs at once, or a
run repeated after a crash before its commit, read the same events again: their ids are
recorded once. The first run, with no token yet, reads the rooms' recent timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sync_pipeline.connectors.base import Decision
from sync_pipeline.connectors.buttons import matrix as matrix_buttons
from sync_pipeline.connectors.matrix import MatrixConnector, card_target
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import CardAction, EventKind, InboundEvent, iso_utc
from sync_pipeline.state import cursors, inbound
from sync_pipeline.untrusted import bounded_id, clean_json

SYNC_TASK = "events.matrix_sync"
SYNC_EVERY_S = 5.0
VENDOR = "matrix"


def cursor_key(connector: str) -> str:
    return f"matrix_sync:{connector}"


def poll(rt: Runtime, connector_name: str, send: Callable[[int], object]) -> int:
    """One /sync read of `connector_name`'s rooms; the number of events recorded."""
    connector = rt.connector(connector_name)
    if not isinstance(connector, MatrixConnector):
        raise TypeError(f"{connector_name} is not a Matrix connector")
    key = cursor_key(connector_name)
    with rt.engine.connect() as conn:
        since = cursors.get(conn, key).cursor
    synced = connector.sync(since)
    connector.joined_invites(synced)
    events = list(decode(connector, connector_name, synced, since))
    rows = []
    with rt.engine.begin() as conn:
        for event in events:
            row_id = inbound.record(conn, event)
            if row_id is not None:
                rows.append(row_id)
        cursors.put(conn, key, str(synced["next_batch"]))
    for row_id in rows:
        send(row_id)
    return len(rows)


def decode(
    connector: MatrixConnector,
    connector_name: str,
    synced: Mapping[str, Any],
    since: str | None,
) -> Iterator[InboundEvent]:
    """The card presses in one /sync answer from `since` (a cut timeline filled in): reactions
    and replies of people (not the bot) to cards of ours that stand for a decision."""
    me = connector.me()
    joined = (synced.get("rooms") or {}).get("join") or {}
    for room_id, room in joined.items():
        for event in connector.timeline(room_id, room or {}, since):
            if not isinstance(event, Mapping) or event.get("sender") in (None, me):
                continue
            press = _press(event)
            if press is None:
                continue
            decision, card_event, comment = press
            source_id = connector.card_source(room_id, card_event)
            if source_id is None:
                continue
            action = CardAction(
                user_id=bounded_id(str(event["sender"])),
                action=decision.value,
                source_id=bounded_id(source_id),
                comment=comment,
                card={"card": bounded_id(card_target(room_id, card_event))},
            )
            yield InboundEvent(
                connector_name,
                VENDOR,
                bounded_id(str(event["event_id"])),
                EventKind.CARD_ACTION,
                _when(event.get("origin_server_ts")),
                clean_json(action.to_json()),
            )


def _press(event: Mapping[str, Any]) -> tuple[Decision, str, str] | None:
    """(decision, the card's event id, comment) of a reaction or reply; None otherwise."""
    content = event.get("content")
    if not isinstance(content, Mapping) or not event.get("event_id"):
        return None
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None
    if event.get("type") == "m.reaction" and relates.get("rel_type") == "m.annotation":
        decision = matrix_buttons.parse_reaction(relates.get("key"))
        card = relates.get("event_id")
        if decision is None or not isinstance(card, str):
            return None
        return decision, card, ""
    if event.get("type") == "m.room.message":
        reply_to = relates.get("m.in_reply_to")
        card = reply_to.get("event_id") if isinstance(reply_to, Mapping) else None
        said = matrix_buttons.parse_reply(content.get("body"))
        if said is None or not isinstance(card, str):
            return None
        return said[0], card, said[1]
    return None


def _when(millis: Any) -> str:
    try:
        return iso_utc(datetime.fromtimestamp(float(millis) / 1000.0, UTC))
    except (TypeError, ValueError, OverflowError, OSError):
        return iso_utc(datetime.now(UTC))
