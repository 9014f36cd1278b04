"""Chat messages into the OA: the handler of `message` events (EventKind.MESSAGE).

A message event goes to every enabled flow that reads stream "messages" from the event's
connector and has `trigger.webhook: true` (the shipped ones make OA todos of important
messages and append decisions made in project groups to the OA project record). For each:

1. The event's data becomes a record in the canonical message shape (the `stages` module
   docstring), hydrated once by the source connector: a group message learns its group's name
   and description, which is where a project group names its project.
2. The flow's rules decide first, on the fields they read, mapped with a directory that has a
   stand-in for anyone without a target account: a message no rule wants is ignored, never
   dead-lettered, whoever sent it, whoever it mentions, and whatever else the mapping needs
   that the message lacks (a one-to-one message has no group; config/flow.py refuses a
   mapping that needs one without a default).
3. A list of users the mapping translates (the mentions) is translated person by person: one
   without a target account becomes a dead letter of their own, with the reason, and is left
   out, so the others still get their todo. A single user who cannot be mapped (the sender)
   dead-letters the message, as in every flow.
4. The message goes through the pipeline's own stages, effect keys and id map
   (`steps.sync_records`): each todo or comment is claimed under a key derived from (flow,
   target, message id, kind, recipient) before the OA is called, so a duplicate delivery, a
   redelivered task or a replay never makes a second one.

It must not call a vendor except through the connectors, nor act on anything but the recorded
event; Transient errors propagate for the event task to retry.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import Config
from sync_pipeline.errors import RecordError
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.events import Handled
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import ChatType, InboundEvent, InboundMessage, Record
from sync_pipeline.stages import MESSAGE_STREAM
from sync_pipeline.stages.rules import filter_batch, paths
from sync_pipeline.stages.transform import RecordMapping, UserDirectory, UserField, transform
from sync_pipeline.state import deadletters
from sync_pipeline.state.inbound import EventStatus

log = logging.getLogger(__name__)

MESSAGES = MESSAGE_STREAM  # the stream a message flow reads
STAND_IN = "no-account:"  # prefix of the id a user without a target account is tried as


def message_flows(config: Config, connector: str) -> list[Flow]:
    """The enabled flows a message from `connector` goes to, in name order."""
    return [
        flow
        for flow in config.enabled_flows()
        if flow.trigger.webhook
        and flow.source.connector == connector
        and flow.source.stream == MESSAGES
    ]


MESSAGE_VERSION = "1"


def message_record(event: InboundEvent) -> Record:
    """The event's message in the canonical shape. `chat` is the conversation (None when the
    vendor names none), `group` the same id for a group message and None for a direct one."""
    message = InboundMessage.from_json(event.data)
    chat = message.chat_id or None
    sent_at = message.sent_at or event.occurred_at
    payload: dict[str, Any] = {
        "id": message.message_id,
        "sender": message.sender or None,
        "chat": chat,
        "chat_type": message.chat_type.value,
        "group": chat if message.chat_type is ChatType.GROUP else None,
        "text": message.text,
        "flags": list(message.flags),
        "mentions": list(dict.fromkeys(message.mentions)),
        "sent_at": sent_at,
    }
    # A message never changes under its id here, so it has one version whatever delivery
    # brought it: a vendor that sends it again under a new event id and time (Agora re-sends a
    # callback with its own timestamp) brings the same version, which the id map and the
    # effect keys both recognise.
    return Record(payload["id"], MESSAGE_VERSION, sent_at, payload)


def handle_message(rt: Runtime, event: InboundEvent) -> Handled:
    """Every message flow of the event's connector, each deciding by its own rules."""
    flows = message_flows(rt.config, event.connector)
    if not flows:
        reason = f"no enabled flow takes messages from {event.connector} by webhook"
        return Handled(EventStatus.IGNORED, reason)
    read_at = steps.read_clock(rt)
    hydrated = rt.connector(event.connector).hydrate(MESSAGES, [message_record(event)])
    if not hydrated:
        return Handled(EventStatus.IGNORED, "the source no longer has the message")
    accounts = [sync_message(rt, flow, hydrated[0], read_at) for flow in flows]
    done = [account for account in accounts if account is not None]
    if not done:
        return Handled(EventStatus.IGNORED, "no flow's rules want this message")
    return Handled(EventStatus.DONE, "; ".join(done))


def sync_message(
    rt: Runtime, flow: Flow, record: Record, read_at: datetime, *, replay: bool = False
) -> str | None:
    """One flow's handling of the message: an account of what it did, or None if its rules
    do not want the message. A replay (of its dead letters) refreshes nothing here: the
    caller refreshed the directory; effect keys keep what was made before from repeating."""
    users = steps.load_directory(rt, flow)
    if not wanted(flow, record, users):
        return None
    cleaned, reasons = without_unmapped(flow, record, users)
    if reasons:
        rows = [(record.source_id, record.as_json(), r, RecordError.__name__) for r in reasons]
        with rt.engine.begin() as conn:
            deadletters.add(conn, flow.name, None, rows)
    _, counts = steps.sync_records(rt, flow.name, [cleaned], read_at, replay=replay)
    log.info(
        "message %s in %s: %d written, %d dead-lettered",
        record.source_id,
        flow.name,
        counts.written,
        counts.dead + len(reasons),
    )
    return f"{flow.name}: {counts.written} written, {counts.dead + len(reasons)} dead-lettered"


def wanted(flow: Flow, record: Record, users: UserDirectory) -> bool:
    """Whether the flow's rules keep the message, asked before anything can refuse it: the
    directory (a stand-in maps everyone) or a mapped field the rules do not read (a link to
    a conversation a one-to-one message does not have).

    Only the fields the rules read are mapped for the question. If one of those cannot be
    mapped, the rules cannot answer: the message counts as wanted, so the pipeline
    dead-letters it with that reason.
    """
    if flow.rules is None:
        return True
    read = {path.split(".")[0] for path in paths(flow.rules)}
    fields = {name: spec for name, spec in flow.mapping.fields.items() if name in read}
    trial = transform([record], RecordMapping(fields), _StandIn(users))
    if not trial.records:
        return True
    return bool(filter_batch(trial.records, flow.rules, {}).kept)


def without_unmapped(flow: Flow, record: Record, users: UserDirectory) -> tuple[Record, list[str]]:
    """The message without the listed users (at a top-level field the mapping translates)
    who have no account on the target, and a dead-letter reason for each one left out."""
    payload = dict(record.payload)
    reasons: list[str] = []
    for name, spec in flow.mapping.fields.items():
        if not isinstance(spec, UserField):
            continue
        listed = payload.get(spec.path)
        if not isinstance(listed, list | tuple):
            continue
        kept = []
        for user in listed:
            if users.map_user(spec.from_system, str(user), spec.to_system) is None:
                reasons.append(f"{name}: {_no_account(users, spec, str(user))}")
            else:
                kept.append(user)
        payload[spec.path] = kept
    return replace(record, payload=payload), reasons


def _no_account(users: UserDirectory, spec: UserField, user: str) -> str:
    """Worded as the transform stage words it, with the number HR knows the person by."""
    employee = users.employee_no(spec.from_system, user)
    who = f"{spec.from_system} user {user}" + (f" (employee {employee})" if employee else "")
    return f"no {spec.to_system} user for {who}"


class _StandIn:
    """The directory, with a stand-in id for anyone who has no account on the target, so the
    rules can be asked before anyone is refused."""

    def __init__(self, users: UserDirectory) -> None:
        self._users = users

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        found = self._users.map_user(from_system, user_id, to_system)
        return found if found is not None else f"{STAND_IN}{user_id}"

    def employee_no(self, system: str, user_id: str) -> str | None:
        return self._users.employee_no(system, user_id)
