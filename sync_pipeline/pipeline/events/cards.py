"""card_action events: an approver pressed Approve or Reject on a card we sent.

The press is applied only if the presser, mapped to their OA user through the directory, is a
current approver of the request as the OA shows it now. Then the OA acts as that user, once:
the action's effect key is (flow, request, its state and node, "oa_action", approver), and a
claim another attempt holds (a double press handled at the same moment, a redelivered task) is
waited for, not repeated. The decision is an effect like any other (pipeline/effects.py): a
pending one whose answer was lost is looked up in the OA's sign log, never made again blindly
(DESIGN.md section 3). Every card of the request in that flow is then updated in place to show
the outcome, each update an effect of its own. Any other press (not an approver, a second
press, a request decided elsewhere or gone) changes nothing and gets the presser one clear
message, keyed by the press event.

Vendor handles stay at the edge: the card effects keep what each IM needs to update a card
(WeCom's response_code, DingTalk's outTrackId, Feishu's message id), and the press brings the
handles of the card pressed, which is how that card is found. A WeCom response_code works
once: the presser's card is updated with the press's own code, the others with the code their
send returned, unless an earlier update spent it.

A quick approval in an IM's approval center (Feishu's, decoded as a card_action too) is judged
and applied the same way; its instance is not updated here but by its own flow, which the
OA's change webhook moves on as the request moves.

A request decided anywhere else (the OA's own web page, another flow's card, a withdrawal)
reaches this flow's cards through `follow_ups`, which the record pipeline calls for every
batch a pull or an event plans (steps.plan_records): each card is updated in place where its
IM lets us do that on our own, else its recipient gets one message saying who decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

from sync_pipeline.config.flow import Flow
from sync_pipeline.connectors.base import (
    DECISION_KIND,
    Connector,
    DecidesApprovals,
    Decision,
    DecisionRequest,
    ReadsOne,
    UpdatesCards,
)
from sync_pipeline.pipeline import effects as protocol
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.directory import DirectorySnapshot
from sync_pipeline.pipeline.effects import Via
from sync_pipeline.pipeline.events import Handled
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import (
    CardAction,
    InboundEvent,
    Notification,
    NotifyKind,
    Record,
    WriteOp,
    WriteRequest,
    WriteStatus,
    parse_iso_utc,
)
from sync_pipeline.stages.plan import effect_key
from sync_pipeline.state import effects, idmap, runs
from sync_pipeline.state.inbound import EventStatus

OA_ACTION = DECISION_KIND  # effect kind of a decision made in the source as the approver
CARD, UPDATE_CARD = NotifyKind.CARD.value, NotifyKind.UPDATE_CARD.value
PRESSABLE = (CARD, NotifyKind.APPROVAL_CENTER.value)  # what an approver can press on
REPLY = "press_reply"  # the state part of a reply's key is the press event's id
FOLLOW_UP = "card_follow_up"  # a card's recipient told how a request decided elsewhere ended
MESSAGES = "messages"  # every IM connector's stream of messages to people
DECIDED = {"approve": "approved", "reject": "rejected"}
STATUS_WORDS = {"approved": "approved", "rejected": "rejected", "revoked": "withdrawn"}


@dataclass(frozen=True)
class Press:
    """A card_action event's facts (records.InboundEvent docstring)."""

    event: InboundEvent
    user: str  # the presser, as the pressing platform knows them
    decision: Decision | None
    source_id: str
    comment: str
    handles: Mapping[str, str]  # the pressed card's handles: task_id, response_code, ...

    @classmethod
    def of(cls, event: InboundEvent) -> Press:
        action = CardAction.from_json(event.data)
        return cls(
            event=event,
            user=action.user_id,
            decision=_decision(action.action),
            source_id=action.source_id,
            comment=action.comment.strip(),
            handles=action.card,
        )

    def pressed(self, card: effects.Effect) -> bool:
        """Whether `card` is the one pressed: one of its handles came with the press."""
        values = set(self.handles.values())
        known = {card.vendor_ref, *(str(v) for v in card.detail.values())}
        return bool(values & known)


@dataclass(frozen=True)
class Scene:
    """Everything a press is judged against, read once."""

    rt: Runtime
    flow: Flow
    press: Press
    cards: tuple[effects.Effect, ...]  # every card (or center item) sent for it in this flow
    source: DecidesApprovals
    users: DirectorySnapshot
    run_id: int

    @property
    def systems(self) -> tuple[str, str]:
        return _systems(self.rt, self.flow)


def handle(rt: Runtime, event: InboundEvent) -> Handled:
    """Apply one press, or tell the presser why not; one run of trigger "webhook"."""
    press = Press.of(event)
    if press.decision is None or not press.source_id or not press.user:
        reason = f"button {event.data.get('action')!r} of {press.source_id!r} decides nothing"
        return Handled(EventStatus.IGNORED, reason)
    found = _find_cards(rt, event.connector, press)
    if found is None:
        reason = f"no card of ours for {press.source_id} was sent through {event.connector}"
        return Handled(EventStatus.IGNORED, reason)
    flow, cards = found
    if not flow.enabled:  # a disabled flow is never run, a press on its cards included
        return Handled(EventStatus.IGNORED, f"{flow.name} is disabled: the press changes nothing")
    source = rt.connector(flow.source.connector)
    if not (isinstance(source, DecidesApprovals) and isinstance(source, ReadsOne)):
        reason = f"{flow.source.connector} cannot decide approvals through its API"
        return Handled(EventStatus.IGNORED, reason)
    users = steps.load_directory(rt, flow)
    with steps.event_run(rt, flow) as run_id:
        scene = Scene(rt, flow, press, cards, source, users, run_id)
        account, written = _respond(scene)
        with rt.engine.begin() as conn:
            runs.add_counts(conn, run_id, pulled=1, written=written)
            runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED)
    return Handled(EventStatus.DONE, f"{flow.name} run {run_id}: {account}")


def _find_cards(
    rt: Runtime, connector: str, press: Press
) -> tuple[Flow, tuple[effects.Effect, ...]] | None:
    """The flow whose card was pressed, and every card it sent for the request: the flow
    holding the pressed card, else any flow that sent the request's cards through there."""
    fallback = None
    with rt.engine.connect() as conn:
        for name in sorted(rt.config.flows):
            flow = rt.config.flows[name]
            if flow.target.connector != connector:
                continue
            cards = tuple(
                card
                for kind in PRESSABLE
                for card in effects.done_for_source(conn, flow.name, press.source_id, kind)
            )
            if any(press.pressed(card) for card in cards):
                return flow, cards
            if cards and fallback is None:
                fallback = (flow, cards)
    return fallback


# -- judging the press ------------------------------------------------------------------------
def _respond(scene: Scene) -> tuple[str, int]:
    """(what happened, effects made now)."""
    press = scene.press
    source_sys, target_sys = scene.systems
    approver = scene.users.map_user(target_sys, press.user, source_sys)
    if approver is None:
        text = "your account is not linked to an OA user, so nothing was changed. Ask an"
        text += " administrator to check the user directory."
        return "the presser has no OA account", _reply(scene, None, text)
    record = _current(scene)
    if record is None:
        return "the request is gone", _reply(scene, None, "this request no longer exists.")
    status = str(record.payload.get("status") or "")
    if status == "pending" and approver in _approvers(record):
        return _decide(scene, record, approver)
    unsettled = [e for e in _tried(scene, approver) if e.status is effects.EffectStatus.PENDING]
    if unsettled:  # our own press, on its way or with its answer lost: the protocol settles it
        _settle_lost(scene, unsettled)
    return _settled(scene, record, approver)


def _settled(scene: Scene, record: Record, approver: str) -> tuple[str, int]:
    """The presser may not act now: show them the outcome of their own decision, if this very
    press made it (a redelivered task), or tell them why nothing happened."""
    tried = _tried(scene, approver)
    done = [e for e in tried if e.status is effects.EffectStatus.DONE]
    own = [e for e in done if e.detail.get("event") == scene.press.event.event_id]
    if own:
        return "already applied", _update_cards(scene, own[-1], approver)
    if done:
        earlier = done[-1]
        word = DECIDED.get(str(earlier.detail.get("decision")), "decided")
        at = _clock(str(earlier.detail.get("at") or ""), scene.source.timezone)
        text = f"you already {word} this request at {at}. Nothing was changed."
        return "a second press", _reply(scene, record, text)
    status = str(record.payload.get("status") or "")
    if status != "pending":
        who = _name(scene.users, scene.systems[0], record.payload.get("last_operator"))
        at = _clock(str(record.payload.get("updated_at") or ""), scene.source.timezone)
        word = STATUS_WORDS.get(status, status)
        text = f"this request was already {word} by {who} at {at}. Nothing was changed."
        return f"the request was already {word}", _reply(scene, record, text)
    text = "you are not an approver of this request. Nothing was changed."
    return "the presser is not an approver", _reply(scene, record, text)


def _decide(scene: Scene, record: Record, approver: str) -> tuple[str, int]:
    """Act in the source as the approver, once (the effect protocol), then update the cards."""
    press = scene.press
    assert press.decision is not None  # noqa: S101 - handle() checked it
    source_sys = scene.systems[0]
    node = str(record.payload.get("node") or "")
    state = f"{record.payload.get('status')}|{node}"
    key = effect_key(scene.flow.name, source_sys, press.source_id, state, OA_ACTION, approver)
    decision = DecisionRequest(press.source_id, press.decision, approver, node, press.comment)
    intent = {
        "decision": press.decision.value,
        "event": press.event.event_id,
        "state": state,
        "comment": press.comment,
    }
    outcome = _make_decisions(scene, [decision.request(key)], {key: intent})[key]
    if outcome.status is WriteStatus.REJECTED:  # no longer their turn, between our read and now
        now = _current(scene)
        if now is None:
            return "the request is gone", _reply(scene, None, "this request no longer exists.")
        return _settled(scene, now, approver)
    if outcome.via is not Via.SENT:  # acted at this node earlier, and the OA lags
        return _settled(scene, record, approver)
    with scene.rt.engine.connect() as conn:
        decided = effects.get(conn, [key])[key]
    word = DECIDED[press.decision.value]
    return f"{word} as OA user {approver}", 1 + _update_cards(scene, decided, approver)


def _settle_lost(scene: Scene, unsettled: Sequence[effects.Effect]) -> None:
    """Decisions of ours still pending on a request that has moved on: waited for while their
    attempt may still be making them, then looked up in the source (pipeline/effects.py),
    never made again blindly."""
    requests, intents = [], {}
    for effect in unsettled:
        state = str(effect.detail.get("state") or "")
        decided = _decision(str(effect.detail.get("decision") or ""))
        if decided is None:  # no intent kept with it: nothing to look it up by
            continue
        decision = DecisionRequest(
            source_id=scene.press.source_id,
            decision=decided,
            as_user=effect.recipient or "",
            node=state.partition("|")[2],
            comment=str(effect.detail.get("comment") or ""),
        )
        requests.append(decision.request(effect.key))
        intents[effect.key] = dict(effect.detail)
    _make_decisions(scene, requests, intents)


def _make_decisions(
    scene: Scene, requests: Sequence[WriteRequest], intents: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, protocol.Outcome]:
    """Decisions made in the source through the effect protocol, each kept with its intent
    (decision, press event, state): outcomes by key. Raises EffectInFlight while another
    attempt (a double press handled at the same moment) may be making one."""
    source_sys = scene.systems[0]
    decides = protocol.Decides(
        scene.source, scene.flow.source.stream, scene.flow.source.connector, source_sys
    )
    about = {
        r.effect_key: replace(protocol.about_of(r), detail=intents[r.effect_key]) for r in requests
    }
    settled = protocol.make(scene.rt, scene.flow.name, decides, requests, patient=True, about=about)
    if settled.waiting:
        raise protocol.waiting_on(scene.flow.name, settled.waiting)
    return settled.outcomes


# -- effects in the IM --------------------------------------------------------------------------
def _update_cards(scene: Scene, decided: effects.Effect, approver: str) -> int:
    """Every card of the request in this flow shows the decision; each update is an effect."""
    source_sys, target_sys = scene.systems
    word = DECIDED.get(str(decided.detail.get("decision")), "decided")
    label = f"{word.capitalize()} by {_name(scene.users, source_sys, approver)}"
    this_press = decided.detail.get("event") == scene.press.event.event_id
    comment = scene.press.comment if this_press else ""
    content = {
        **_mapped(scene),
        "status": word,
        "status_label": label,
        "text": f"{label}: {comment}" if comment else label,
        "approval": False,  # no buttons any more
    }
    state = f"{word}|{decided.detail.get('state')}|{approver}"
    spent = _spent_codes(scene)
    requests = []
    for card in (c for c in scene.cards if c.kind == CARD):  # a center item follows the OA
        code = _response_code(scene.press, card, spent)
        if code is None and card.detail.get("response_code"):
            continue  # its one-use code is spent and this press is not on it: cannot update
        recipient = card.recipient or card.key
        key = effect_key(
            scene.flow.name, target_sys, scene.press.source_id, state, UPDATE_CARD, recipient
        )
        requests.append(_card_update(key, scene.press.source_id, card, content, code))
    return protocol.make_effects(scene.rt, scene.flow, requests, scene.run_id, patient=True).written


def _card_update(
    key: str, source_id: str, card: effects.Effect, content: Mapping[str, Any], code: str | None
) -> WriteRequest:
    """Change `card` in place to show `content`; `code` is WeCom's one-use response_code."""
    return WriteRequest(
        effect_key=key,
        source_id=source_id,
        op=WriteOp.UPDATE,
        notification=Notification(NotifyKind.UPDATE_CARD, card.recipient, content, code),
        target_id=card.vendor_ref,
    )


def _response_code(press: Press, card: effects.Effect, spent: set[str]) -> str | None:
    """The one-use handle to update `card` with (WeCom): the press's own for the pressed card,
    else the one its send returned, if no update has used it."""
    if press.pressed(card) and press.handles.get("response_code"):
        return press.handles["response_code"]
    stored = card.detail.get("response_code")
    return None if stored is None or str(stored) in spent else str(stored)


def _spent_codes(scene: Scene) -> set[str]:
    with scene.rt.engine.connect() as conn:
        updates = effects.tried_for_source(
            conn, scene.flow.name, scene.press.source_id, UPDATE_CARD
        )
    return {str(e.detail["response_code"]) for e in updates if e.detail.get("response_code")}


def _reply(scene: Scene, record: Record | None, text: str) -> int:
    """One message to the presser, once per press event, saying what happened and why."""
    press = scene.press
    verb = "Approve" if press.decision is Decision.APPROVE else "Reject"
    title = str(record.payload.get("title") or "") if record is not None else ""
    on = f' on "{title}"' if title else ""
    at = _clock(press.event.occurred_at, scene.source.timezone, seconds=True)
    content = {"text": f"You pressed {verb}{on} at {at}, but {text}", "title": title}
    target_sys = scene.systems[1]
    request = WriteRequest(
        effect_key=effect_key(
            scene.flow.name, target_sys, press.source_id, press.event.event_id, REPLY, press.user
        ),
        source_id=press.source_id,
        op=WriteOp.CREATE,
        notification=Notification(NotifyKind.MESSAGE, press.user, content),
    )
    # Through the IM's messages, also when the flow's own target is an approval center.
    flow = replace(scene.flow, target=replace(scene.flow.target, stream=MESSAGES))
    return protocol.make_effects(scene.rt, flow, [request], scene.run_id, patient=True).written


# -- cards of requests decided elsewhere --------------------------------------------------------
def follow_ups(
    rt: Runtime,
    flow: Flow,
    records: Sequence[Record],
    shown: Mapping[str, Mapping[str, Any]],
    users: DirectorySnapshot,
) -> list[WriteRequest]:
    """Writes that bring this flow's cards of decided requests up to date, when the decision
    was not made on one of them (in the OA's own web page, on another IM's card, a
    withdrawal). A card still showing the request pending is updated in place where its IM
    allows that now (connectors.base.UpdatesCards); otherwise its recipient gets one message
    naming who decided, how and when. One effect key per card's recipient and outcome,
    whichever way it goes, so pulls and events that see the decision again make nothing more.

    `records` are the requests as the source shows them now, `shown` what the flow last
    mapped for each (what its cards were made of). A request decided by a press on one of
    this flow's cards is left to the press, which updates the cards itself (`_update_cards`).
    """
    decided = {r.source_id: r for r in records if str(r.payload.get("status")) in STATUS_WORDS}
    if not decided:
        return []
    kinds = (CARD, UPDATE_CARD, OA_ACTION)
    with rt.engine.connect() as conn:
        known = effects.of_sources(conn, flow.name, list(decided), kinds)
    source = rt.connector(flow.source.connector)
    teller = _Teller(
        flow,
        rt.connector(flow.target.connector),
        users,
        _systems(rt, flow),
        source.timezone if isinstance(source, DecidesApprovals) else UTC,
    )
    writes: list[WriteRequest] = []
    for source_id, record in decided.items():
        about = [e for e in known if e.source_id == source_id]
        writes += teller.tell(record, shown.get(source_id, {}), about)
    return writes


@dataclass(frozen=True)
class _Teller:
    """Tells the recipients of one flow's cards how their requests ended."""

    flow: Flow
    target: Connector
    users: DirectorySnapshot
    systems: tuple[str, str]
    zone: tzinfo

    def tell(
        self, record: Record, shown: Mapping[str, Any], known: Sequence[effects.Effect]
    ) -> list[WriteRequest]:
        """One write per card of the request whose recipient has not been told yet."""
        if any(_pressed(record, e) for e in known):
            return []  # decided on one of this flow's cards: the press updates them
        updates = [e for e in known if e.kind == UPDATE_CARD]
        told = {e.recipient for e in updates if e.status is effects.EffectStatus.DONE}
        spent = {str(e.detail["response_code"]) for e in updates if e.detail.get("response_code")}
        writes = []
        for card in known:
            sent = card.kind == CARD and card.status is effects.EffectStatus.DONE
            if not sent or card.recipient is None or card.recipient in told:
                continue
            key = effect_key(
                self.flow.name,
                self.systems[1],
                record.source_id,
                str(record.payload.get("status")),
                FOLLOW_UP,
                card.recipient,
            )
            handles = {k: str(v) for k, v in card.detail.items() if str(v) not in spent}
            age_s = (datetime.now(UTC) - card.created_at).total_seconds()
            if isinstance(self.target, UpdatesCards) and self.target.can_update_card(
                age_s, handles
            ):
                writes.append(self._in_place(key, record, shown, card, handles))
            else:
                writes.append(self._message(key, record, shown, card.recipient))
        return writes

    def _in_place(
        self,
        key: str,
        record: Record,
        shown: Mapping[str, Any],
        card: effects.Effect,
        handles: Mapping[str, str],
    ) -> WriteRequest:
        """The card, changed to show the outcome and who decided, without its buttons."""
        status = str(record.payload.get("status"))
        who = _name(self.users, self.systems[0], record.payload.get("last_operator"))
        label = f"{STATUS_WORDS[status].capitalize()} by {who}"
        content = {**shown, "status": status, "status_label": label, "text": label}
        content["approval"] = False  # no buttons any more
        return _card_update(key, record.source_id, card, content, handles.get("response_code"))

    def _message(
        self, key: str, record: Record, shown: Mapping[str, Any], recipient: str
    ) -> WriteRequest:
        """A message to the card's recipient: who decided (maybe they did), how, and when."""
        source_sys, target_sys = self.systems
        decider = record.payload.get("last_operator")
        theirs = self.users.map_user(target_sys, recipient, source_sys)
        who = "you" if theirs is not None and theirs == decider else None
        word = STATUS_WORDS[str(record.payload.get("status"))]
        at = _clock(str(record.payload.get("updated_at") or ""), self.zone)
        title = str(shown.get("title") or record.payload.get("title") or "")
        text = f'"{title}" was' if title else "This request was"
        text += f" {word} by {who or _name(self.users, source_sys, decider)} at {at}."
        text += " Nothing is waiting for you any more."
        return WriteRequest(
            effect_key=key,
            source_id=record.source_id,
            op=WriteOp.CREATE,
            notification=Notification(NotifyKind.MESSAGE, recipient, {"text": text}),
        )


def _pressed(record: Record, effect: effects.Effect) -> bool:
    """Whether `effect` is the press (made or on its way) that decided `record` as it is."""
    acted = effect.status in (effects.EffectStatus.DONE, effects.EffectStatus.PENDING)
    return (
        effect.kind == OA_ACTION
        and acted
        and effect.recipient == record.payload.get("last_operator")
        and DECIDED.get(str(effect.detail.get("decision"))) == record.payload.get("status")
    )


def _systems(rt: Runtime, flow: Flow) -> tuple[str, str]:
    """(source vendor, target vendor) of a flow, as effect keys and the directory name them."""
    connectors = rt.config.connectors
    return (
        connectors[flow.source.connector].system,
        connectors[flow.target.connector].system,
    )


# -- reading ----------------------------------------------------------------------------------
def _current(scene: Scene) -> Record | None:
    """The request as the source shows it now, with its current approvers."""
    stream = scene.flow.source.stream
    assert isinstance(scene.source, ReadsOne)  # noqa: S101 - handle() checked it
    record = scene.source.read_one(stream, scene.press.source_id)
    if record is None:
        return None
    hydrated = scene.rt.connector(scene.flow.source.connector).hydrate(stream, [record])
    return hydrated[0] if hydrated else None


def _tried(scene: Scene, approver: str) -> list[effects.Effect]:
    """The approver's decisions on this request through us, whatever became of them."""
    with scene.rt.engine.connect() as conn:
        return effects.tried_for_source(
            conn, scene.flow.name, scene.press.source_id, OA_ACTION, approver
        )


def _mapped(scene: Scene) -> Mapping[str, Any]:
    """The request as the flow last mapped it (title, link...): what the cards were made of."""
    source_sys, target_sys = scene.systems
    flow = scene.flow
    with scene.rt.engine.connect() as conn:
        links = idmap.lookup(
            conn,
            (source_sys, flow.source.stream),
            (target_sys, flow.target.stream),
            [scene.press.source_id],
        )
    link = links.get(scene.press.source_id)
    return dict(link.payload) if link is not None and link.payload else {}


def _decision(action: str) -> Decision | None:
    try:
        return Decision(action)
    except ValueError:
        return None  # some other button ("open", a vote...): not a decision


def _approvers(record: Record) -> Sequence[str]:
    value = record.payload.get("current_approvers") or []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _name(users: DirectorySnapshot, system: str, user_id: Any) -> str:
    if user_id in (None, ""):
        return "someone"
    person = users.by_user.get((system, str(user_id)))
    return person.name if person is not None and person.name else f"user {user_id}"


def _clock(iso: str, zone: tzinfo, *, seconds: bool = False) -> str:
    """A time as people there read it: "10:32", or the day too when it is not today."""
    try:
        moment = parse_iso_utc(iso).astimezone(zone)
    except ValueError:
        return "an earlier time"
    today = datetime.now(zone).date()
    shown = moment.strftime("%H:%M:%S" if seconds else "%H:%M")
    return shown if moment.date() == today else f"{moment:%Y-%m-%d} {shown}"
