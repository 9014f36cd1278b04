"""Whatever an inbound event holds, it ends handled, ignored with a reason, or in dead letters
with their reasons, and makes each of its effects at most once (issue 9): the property, over
events Hypothesis makes.

Each example is a delivery as the vendor makes it, signed and encrypted with the sandbox's own
implementation of the vendor's scheme (never with our verify.py), sent over HTTP to the real
webhook service, and handled from the row the service recorded, as the `events.handle` task
handles it (`events.handle`, in this process). Hostile content (tests/hostile.py: NUL, lone
surrogates as JSON escapes, right-to-left marks and overrides, every vendor's markup, and text
as long as the service takes) goes into every field the handlers read:

- chat messages, Feishu's `im.message.receive_v1` and Agora Chat's message callback: the text,
  the mentions and the names they show, the chat, sender and message ids; through the message
  flows into the OA emulator (todos, project comments). Each is delivered twice, under two
  event ids, as a vendor may deliver one message twice.
- card presses on the card of a pending approval (WeCom, DingTalk, Feishu): the comment, and
  each id (presser, request, card handle, WeCom's response code, the action) the real one or a
  hostile one.

For each: the service answers 2xx, or a 4xx it counts, never 500; each event ends DONE or
IGNORED with a reason, never FAILED and never left QUEUED, and its dead letters each carry a
reason, none twice; every effect in the OA's ledger is made at most once (a todo per message
and receiver, a comment per message, a decision per request) and exactly when the event asks
for it; what reaches the OA is the text as sent, cleaned (untrusted.clean_text: U+FFFD for
NUL and lone surrogates); and a card updated after a press has the structure of one updated
after a plain press (tests/structure.py): the content makes no link, mention or button.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import hypothesis
import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_pipeline.connectors.oa import clip_chars
from sync_pipeline.devtools.sandbox.agora import callback_security
from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.feishu import encrypt_event, sign_event
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt
from sync_pipeline.errors import Transient
from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import deadletters, inbound
from sync_pipeline.state.inbound import EventStatus, StoredEvent
from sync_pipeline.state.schema import inbound_events
from sync_pipeline.untrusted import REPLACEMENT, bounded_id, clean_text, is_clean
from sync_pipeline.webhooks.feishu import MENTION_KEY
from tests.e2e.spine import emptied
from tests.events.approval_scene import (
    DINGTALK_FLOW,
    WORLD,
    approval_changed,
    deliver,
    dingtalk_card,
    dingtalk_id,
    feishu_card,
    new_approval,
    oa_actions,
    oa_id,
    oa_remarks,
    wecom_card,
    wecom_id,
)
from tests.hostile import PIECES, characters, markup_text
from tests.structure import UPDATE_STRUCTURES, without_id
from tests.webhooks.conftest import Service, private_redis, running_service  # noqa: F401

PROJECT = WORLD.projects[0]  # P001, whose group is "Project 1 group"
GROUP = "Project 1 group"
MEMBERS = PROJECT.member_nos[:3]  # in the project's group, with an account everywhere
APPLICANT, APPROVER, OTHER = "E00010", "E00011", "E00013"
TODO = "/rest/ofs/ReceiveRequestInfoByJson"
COMMENT = "/api/proj/progress/comment"
MESSAGE_FLOWS = {
    "feishu": ("feishu_important_messages_to_oa_todos", "feishu_project_decisions_to_oa"),
    "agora": ("agora_important_messages_to_oa_todos",),
}
APPROVAL_FLOWS = {
    "wecom": "approvals_to_wecom",
    "dingtalk": "approvals_to_dingtalk",
    "feishu": "approvals_to_feishu",
}
BIG = 600_000  # characters of text: a body near the service's 1 MB once encrypted
_redis_dbs = itertools.cycle(range(16))


def bounded(examples: int) -> settings:
    """A bounded number of examples, each taking what it takes (CI: seconds for each test)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass(frozen=True)
class Stranger:
    """An id no one has: hostile text where the vendor puts a user's, a chat's or a card's id."""

    id: str


# Ids as hostile as their field allows: a vendor's id is never empty, and one of a thousand
# characters is kept as a prefix and a digest (untrusted.bounded_id).
strangers = st.builds(Stranger, st.text(characters, min_size=1, max_size=16) | st.just("u" * 1000))


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` three times in four: most examples reach the effects, the others the refusals."""
    return st.sampled_from([usual, usual, usual, other]).flatmap(lambda chosen: chosen)


# -- the service and its deliveries ------------------------------------------------------------
@pytest.fixture
def redis_url(private_redis: str) -> str:  # noqa: F811 - the fixture imported above
    """Overrides tests/conftest.py's: the service enqueues each event it records, and a worker
    of another test sharing the machine's Redis could take it."""
    return emptied(private_redis, next(_redis_dbs))


@pytest.fixture
def service(
    sandbox: SandboxClient, redis_url: str, database_url: str, tmp_path: Path
) -> Iterator[Service]:
    with running_service(sandbox, redis_url, database_url, tmp_path) as running:
        yield running


@dataclass(frozen=True)
class Delivery:
    """One POST a vendor makes to our webhook."""

    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def delivered(
    service: Service, rt: Runtime, platform: str, delivery: Delivery
) -> list[StoredEvent]:
    """Send `delivery` as the vendor would; the events the service recorded for it, each
    handled as the events.handle task handles it. The answer is a 2xx, or a 4xx counted once
    among the connector's refusals."""
    refused = sum(service.refusals(platform).values())
    last = _last_row(service)

    answer = requests.post(
        service.endpoint(platform),
        params=dict(delivery.query),
        headers=dict(delivery.headers),
        data=delivery.body,
        timeout=60,
    )

    assert answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.status_code >= 400:
        assert sum(service.refusals(platform).values()) == refused + 1, answer.text[:200]
        hypothesis.event(f"refused {answer.status_code} {answer.text[:60]}")
        return []
    return [handled(rt, row_id) for row_id in _rows_after(service, last)]


def handled(rt: Runtime, row_id: int) -> StoredEvent:
    """The row once handled; a Transient error is retried, as the task retries it."""
    for _ in range(3):
        try:
            events.handle(rt, row_id)
            break
        except Transient:
            continue
        except Exception:  # noqa: BLE001 - recorded on the row as FAILED, asserted by settled()
            break
    with rt.engine.connect() as conn:
        stored = inbound.get(conn, row_id)
    assert stored is not None
    return stored


def _last_row(service: Service) -> int:
    with service.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(inbound_events.c.id))).scalar() or 0)


def _rows_after(service: Service, last: int) -> list[int]:
    with service.engine.connect() as conn:
        query = sa.select(inbound_events.c.id).where(inbound_events.c.id > last)
        return sorted(conn.execute(query).scalars())


def settled(rows: Sequence[StoredEvent]) -> None:
    """Each event ended as it may: done, or ignored with its reason."""
    for row in rows:
        hypothesis.event(f"{row.status}: {re.sub(r'[0-9]+', 'N', row.error or '')[:40]}")
        assert row.status in (EventStatus.DONE, EventStatus.IGNORED), (row.status, row.error)
        assert row.error, "a handled event says what was done, or why nothing was"


def letters_of(rt: Runtime, flow: str, source_id: str) -> list[deadletters.DeadLetter]:
    """The flow's open dead letters about one record: each with its reason, none twice."""
    with rt.engine.connect() as conn:
        found = deadletters.open_letters(conn, flow, limit=10_000)
    mine = [d for d in found if d.source_id == source_id]
    reasons = [d.reason for d in mine]
    assert all(reasons), mine
    assert len(set(reasons)) == len(reasons), reasons
    return mine


@dataclass
class Ledger:
    """The sandbox's ledger from a mark on, read without reading it all again."""

    sandbox: SandboxClient
    mark: int = 0

    def bodies(self, platform: str, endpoint: str) -> list[dict[str, Any]]:
        """What the platform accepted at `endpoint` since the mark."""
        entries = self.sandbox.ledger(platform, since_seq=self.mark)
        return [e["body"] for e in entries if e["endpoint"] == endpoint]

    def move_on(self) -> None:
        entries = self.sandbox.ledger(since_seq=self.mark)
        self.mark = max([self.mark, *(int(e["seq"]) for e in entries)])


@pytest.fixture
def ledger(sandbox: SandboxClient) -> Ledger:
    found = Ledger(sandbox)
    found.move_on()
    return found


# -- each vendor's envelope, as the sandbox implements it ----------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def json_bytes(value: Any) -> bytes:
    """JSON as vendors send it: a lone surrogate travels as a `\\ud800` escape."""
    return json.dumps(value, ensure_ascii=True).encode()


def feishu_delivery(env: Mapping[str, str], event_type: str, event: Any) -> Delivery:
    """A v2 event, encrypted with the Encrypt Key and signed (platform-apis.md 3.2)."""
    key = env["SANDBOX_FEISHU_ENCRYPT_KEY"]
    header = {
        "event_id": uuid.uuid4().hex,
        "event_type": event_type,
        "create_time": str(now_ms()),
        "token": env["SANDBOX_FEISHU_VERIFICATION_TOKEN"],
        "app_id": env["SANDBOX_FEISHU_APP_ID"],
        "tenant_key": "736588c9260f175d",
    }
    plaintext = json_bytes({"schema": "2.0", "header": header, "event": event})
    body = json_bytes({"encrypt": encrypt_event(key, plaintext)})
    stamp, nonce = str(int(time.time())), uuid.uuid4().hex
    headers = {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sign_event(stamp, nonce, key, body),
    }
    return Delivery(body, headers=headers)


def agora_delivery(env: Mapping[str, str], stamp: int, **fields: Any) -> Delivery:
    """A post-delivery callback for a message Agora received at `stamp` (ms): callId and
    timestamp signed, the body as it is."""
    app_key = f"{env['SANDBOX_AGORA_ORG_NAME']}#{env['SANDBOX_AGORA_APP_NAME']}"
    call_id = f"{app_key}_{uuid.uuid4()}"
    security = callback_security(call_id, env["SANDBOX_AGORA_CALLBACK_SECRET"], stamp)
    callback = {
        "callId": call_id,
        "eventType": "chat",
        "timestamp": stamp,
        "securityVersion": "1.0.0",
        "security": security,
        "appkey": app_key,
        **fields,
    }
    return Delivery(json_bytes(callback), headers={"Content-Type": "application/json"})


def wecom_delivery(env: Mapping[str, str], fields: Mapping[str, Any]) -> Delivery:
    """A callback message as XML, encrypted and signed (WXBizMsgCrypt, platform-apis.md 1.2)."""
    root = ElementTree.Element("xml")
    for name, value in fields.items():
        ElementTree.SubElement(root, name).text = xml_text(str(value))
    crypto = WXBizMsgCrypt(
        env["SANDBOX_WECOM_TOKEN"],
        env["SANDBOX_WECOM_ENCODING_AES_KEY"],
        env["SANDBOX_WECOM_CORPID"],
    )
    sealed = crypto.seal(ElementTree.tostring(root, encoding="unicode"))
    query = {"msg_signature": sealed.msg_signature, "timestamp": sealed.timestamp}
    body = f"<xml><Encrypt><![CDATA[{sealed.encrypt}]]></Encrypt></xml>".encode()
    return Delivery(body, query={**query, "nonce": sealed.nonce})


def xml_text(text: str) -> str:
    """Text as XML can carry it (what WeCom sends): the characters XML forbids left out."""
    return "".join(
        c for c in text if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"
    )


def dingtalk_delivery(env: Mapping[str, str], event: Any) -> Delivery:
    """An event, encrypted with the owner key and signed, timestamp in milliseconds."""
    crypto = WXBizMsgCrypt(
        env["SANDBOX_DINGTALK_TOKEN"],
        env["SANDBOX_DINGTALK_AES_KEY"],
        env["SANDBOX_DINGTALK_APP_KEY"],
    )
    sealed = crypto.seal(json.dumps(event, ensure_ascii=True), timestamp=str(now_ms()))
    query = {"msg_signature": sealed.msg_signature, "timestamp": sealed.timestamp}
    return Delivery(
        json_bytes({"encrypt": sealed.encrypt}),
        query={**query, "nonce": sealed.nonce},
        headers={"Content-Type": "application/json"},
    )


# -- chat messages -------------------------------------------------------------------------------
Who = str | Stranger  # a member of the project's group by employee number, or a stranger


ECHO = Stranger("admin")  # Agora: the sender of our own messages, which come back as echoes


@dataclass(frozen=True)
class Mention:
    who: Who
    name: str  # the name the mention shows in the text (Feishu)
    bot: bool = False  # an app's mention (Feishu; a stranger): no one to give a todo to


@dataclass(frozen=True)
class Message:
    """One chat message: what Hypothesis chose for it."""

    before: str
    tags: tuple[str, ...]  # hashtags between `before` and `after`: what the rules read
    after: str
    sender: Who
    mentions: tuple[Mention, ...]
    chat: str | Stranger | None  # the project's group, a stranger, or None: one-to-one
    message_id: str

    @property
    def text(self) -> str:
        return " ".join([self.before, *self.tags, self.after])


# No `@_user_N` in what the user typed: Feishu writes those for the mentions alone.
typed = markup_text.filter(lambda t: MENTION_KEY.search(t) is None)
members = st.sampled_from(MEMBERS)
names = st.text(characters, max_size=8)
mentions = mostly(
    st.builds(Mention, mostly(members, strangers), names),
    st.builds(Mention, strangers, names, st.just(True)),
)
messages = st.builds(
    Message,
    before=typed,
    tags=mostly(
        st.sampled_from([("#important",), ("#decision", "#important")]),
        st.sampled_from([("#decision",), ()]),
    ),
    after=typed,
    sender=mostly(members, strangers | st.just(ECHO)),
    mentions=mostly(st.lists(mentions, min_size=1, max_size=3), st.just([])).map(tuple),
    chat=mostly(st.just(GROUP), st.just(None) | strangers),
    message_id=st.text(characters, max_size=12),
)
HUGE = Message(  # a body near the limit: hostile text, then 600,000 characters of it
    "\x00\ud800\u202e[x](http://evil.example) <at id=all></at>" + "L" * BIG,
    ("#important", "#decision"),
    "\u200f",
    MEMBERS[0],
    (Mention(MEMBERS[1], "\x00 <at id=all></at>"),),
    GROUP,
    "huge",
)


UNKEYABLE = Message(  # an id holding NUL, and a mention of someone with no OA user
    "please sign",
    ("#important", "#decision"),
    "",
    MEMBERS[0],
    (Mention(MEMBERS[1], "Ann"), Mention(Stranger("\x00"), "x")),
    GROUP,
    "\x00",
)


@dataclass(frozen=True)
class Sent:
    """A message as delivered, and what the OA should make of it."""

    # A new delivery of the message each call: another event id (or callId), the message and
    # its time the same, as when a vendor delivers one message twice.
    delivery: Callable[[], Delivery]
    message_id: str  # as we keep it (bounded)
    text: str  # as the handlers read it: cleaned
    sender: str | None  # the sender's OA user, if they have one
    receivers: frozenset[str]  # the OA users mentioned: whom its todos go to
    strangers: frozenset[str]  # the people mentioned who have no OA user, as we keep their ids
    todos: bool  # the todo flow's rules want it: tagged #important (and not our own echo)
    comment: bool  # the decision flow's rules want it (Feishu): a #decision in the project group

    @property
    def keyable(self) -> bool:
        """Whether the pipeline can key the message by its id: one that held what PostgreSQL
        refuses (kept as U+FFFD) cannot be re-read by it, and is a dead letter (steps.py)."""
        return REPLACEMENT not in self.message_id


def feishu_user(store: SandboxStore, employee_no: str) -> Mapping[str, Any]:
    return store.list("feishu", "user", equals={"employee_no": employee_no})[0]


def feishu_message(env: Mapping[str, str], store: SandboxStore, message: Message) -> Sent:
    """im.message.receive_v1 for the message: its mentions as Feishu writes them, `@_user_N`
    in the text and an entry each (an app's with an open_id only)."""
    ids = {
        mention: _feishu_ids(store, mention.who, bot=mention.bot) for mention in message.mentions
    }
    keys = [f"@_user_{n}" for n in range(1, len(message.mentions) + 1)]
    mentions = [
        {"key": key, "id": ids[m], "name": m.name, "tenant_key": "t"}
        for key, m in zip(keys, message.mentions, strict=True)
    ]
    chat = (
        str(store.list("feishu", "chat", equals={"name": GROUP})[0]["chat_id"])
        if message.chat == GROUP
        else (message.chat.id if isinstance(message.chat, Stranger) else "oc_p2p")
    )
    message_id, at = f"om_{message.message_id}{uuid.uuid4().hex}", str(now_ms())
    content = json.dumps({"text": " ".join([*keys, message.text])})

    def delivery() -> Delivery:
        event = {
            "sender": {
                "sender_id": _feishu_ids(store, message.sender),
                "sender_type": "user",
                "tenant_key": "t",
            },
            "message": {
                "message_id": message_id,
                "root_id": "",
                "parent_id": "",
                "create_time": at,
                "update_time": at,
                "chat_id": chat,
                "chat_type": "p2p" if message.chat is None else "group",
                "message_type": "text",
                "content": content,
                "mentions": mentions,
            },
        }
        return feishu_delivery(env, "im.message.receive_v1", event)

    shown = " ".join([*(f"@{m.name}" for m in message.mentions), message.text])
    people = [m.who for m in message.mentions if not m.bot]
    return Sent(
        delivery,
        bounded_id(message_id),
        clean_text(shown).strip(),
        _oa_user(message.sender),
        frozenset(u for who in people if (u := _oa_user(who))),
        frozenset(bounded_id(who.id) for who in people if isinstance(who, Stranger)),
        "#important" in message.tags,
        "#decision" in message.tags and message.chat == GROUP,
    )


def _feishu_ids(store: SandboxStore, who: Who, *, bot: bool = False) -> dict[str, str]:
    if isinstance(who, Stranger):
        union = "" if bot else f"on_{uuid.uuid4().hex}"
        return {"union_id": union, "user_id": "" if bot else who.id, "open_id": who.id}
    user = feishu_user(store, who)
    return {k: str(user[k]) for k in ("union_id", "user_id", "open_id")}


def agora_message(env: Mapping[str, str], store: SandboxStore, message: Message) -> Sent:
    """Agora's callback for the message: mentions in `ext.em_at_list` (an app has none)."""
    group = (
        str(store.list("agora", "group", equals={"groupname": GROUP})[0]["groupid"])
        if message.chat == GROUP
        else (message.chat.id if isinstance(message.chat, Stranger) else None)
    )
    msg_id, at = f"{message.message_id}{uuid.uuid4().int}", now_ms()
    people = [m for m in message.mentions if not m.bot]
    at_list = [_agora_id(m.who) for m in people]

    def delivery() -> Delivery:
        where = {"chat_type": "groupchat", "group_id": group, "to": group} if group else {}
        body = {"type": "txt", "msg": message.text}
        return agora_delivery(
            env,
            at,
            **{"chat_type": "chat", "to": MEMBERS[1].lower(), **where},
            **{"from": _agora_id(message.sender)},
            msg_id=msg_id,
            payload={"ext": {"em_at_list": at_list}, "bodies": [body]},
        )

    return Sent(
        delivery,
        bounded_id(msg_id),
        clean_text(message.text),
        _oa_user(message.sender),
        frozenset(u for m in people if (u := _oa_user(m.who))),
        frozenset(bounded_id(m.who.id) for m in people if isinstance(m.who, Stranger)),
        "#important" in message.tags and message.sender != ECHO,
        False,  # Agora's flow makes todos only
    )


def _agora_id(who: Who) -> str:
    return who.id if isinstance(who, Stranger) else who.lower()


def _oa_user(who: Who) -> str | None:
    return None if isinstance(who, Stranger) else oa_id(who)


MESSAGE_MAKERS = {"feishu": feishu_message, "agora": agora_message}


@pytest.mark.parametrize("platform", sorted(MESSAGE_FLOWS))
@bounded(40)
@given(message=messages)
@example(message=HUGE)
@example(message=UNKEYABLE)
def test_given_any_chat_message_each_effect_is_made_once_with_its_text_cleaned(
    platform: str,
    rt: Runtime,
    service: Service,
    sandbox_store: SandboxStore,
    ledger: Ledger,
    message: Message,
) -> None:
    ledger.move_on()
    sent = MESSAGE_MAKERS[platform](service.env, sandbox_store, message)

    first = delivered(service, rt, platform, sent.delivery())
    again = delivered(service, rt, platform, sent.delivery())  # the message again, as new

    assert first, "a message is never refused for its content"
    settled(first + again)
    todos = ledger.bodies("oa", TODO)
    made = sorted((str(t["flowid"]), str(t["receiver"])) for t in todos)
    assert len(made) == len(set(made)), "a todo made twice"
    assert {flow for flow, _ in made} <= {sent.message_id}
    for todo in todos:
        assert todo["requestname"] == clip_chars(sent.text)
        assert todo["creator"] == sent.sender
    todo_flow, *decision_flow = MESSAGE_FLOWS[platform]
    todo_letters = letters_of(rt, todo_flow, sent.message_id)
    if sent.todos:  # each mention has its todo, or a dead letter; the message, one if it must
        whole = sent.sender is not None and sent.keyable  # one sent by a stranger, or unkeyable
        assert {r for _, r in made} == (sent.receivers if whole else set())
        assert len(todo_letters) == len(sent.strangers) + (not whole)
    comments = ledger.bodies("oa", COMMENT)
    hypothesis.event(f"todos {len(todos)} comments {len(comments)}")
    assert len(comments) <= 1, "a comment made twice"
    for flow in decision_flow:
        comment_letters = letters_of(rt, flow, sent.message_id)
        if sent.comment:  # on the project's record, or one dead letter
            assert len(comments) + len(comment_letters) == 1, (comments, comment_letters)
        for comment in comments:
            assert comment["content"].startswith(f"Decision in {GROUP}: {sent.text}".strip())


# -- card presses ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pressing:
    """One press of the approver's card: what Hypothesis chose for it. None: the real one."""

    action: str  # "approve", "reject", or anything a button might carry
    presser: str | Stranger  # the approver, someone else, or a stranger
    request: Stranger | None
    handle: Stranger | None  # WeCom's task id, DingTalk's outTrackId, Feishu's message id
    code: Stranger | None  # WeCom's one-use response code
    comment: str  # the approver's comment (WeCom's button cards take none)

    def decides(self) -> bool:
        return (
            self.presser == APPROVER
            and self.request is None
            and self.action in ("approve", "reject")
        )


pressings = st.builds(
    Pressing,
    action=mostly(st.sampled_from(["approve", "reject"]), st.text(characters, max_size=10)),
    presser=mostly(st.just(APPROVER), st.just(OTHER) | strangers),
    request=mostly(st.none(), strangers),
    handle=mostly(st.none(), strangers),
    code=mostly(st.none(), strangers),
    comment=markup_text | st.sampled_from(PIECES).map(lambda piece: (piece * 50_000)[:50_000]),
)
CLASSIC = Pressing(  # every kind of markup, and what PostgreSQL refuses, in an approval
    "approve",
    APPROVER,
    None,
    None,
    None,
    "**Approved** by [the CEO](http://evil.example) <at id=all></at>\n# Pay\x00\ud800\u202e",
)


@dataclass(frozen=True)
class Card:
    """A pending approval and the card its approver got for it."""

    request_id: str
    handle: str  # task id, outTrackId or message id
    code: str = ""  # WeCom: a response code its emulator minted for a press


def carded(platform: str, rt: Runtime, sandbox: SandboxClient) -> Card:
    """A new approval at APPROVER, and the card the flow sent them on `platform`, by way of
    the OA's change webhook (the DingTalk flow, which ships polling only, taking it too, as a
    deployment may set it: its card comes at once rather than with a pull a second later)."""
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    deliver(
        with_webhook(rt, DINGTALK_FLOW) if platform == "dingtalk" else rt,
        approval_changed(request_id),
    )
    if platform == "dingtalk":
        return Card(request_id, dingtalk_card(sandbox, title, dingtalk_id(APPROVER)))
    if platform == "feishu":
        return Card(request_id, feishu_card(sandbox, title)[0])
    task_id = str(wecom_card(sandbox, title, wecom_id(APPROVER))["task_id"])
    pressed = sandbox.press(  # the emulator mints the code; its callback goes nowhere
        "wecom",
        {"kind": "button", "task_id": task_id, "userid": wecom_id(APPROVER), "key": ""},
    )
    return Card(request_id, task_id, str(pressed["response_code"]))


def with_webhook(rt: Runtime, flow: str) -> Runtime:
    """The runtime with `flow` started by webhooks too."""
    found = rt.config.flows[flow]
    flows = {**rt.config.flows, flow: replace(found, trigger=replace(found.trigger, webhook=True))}
    return replace(rt, config=replace(rt.config, flows=flows))


def pressed(
    platform: str, env: Mapping[str, str], store: SandboxStore, card: Card, press: Pressing
) -> Delivery:
    """The vendor's callback for the press."""
    source = press.request.id if press.request else card.request_id
    handle = press.handle.id if press.handle else card.handle
    if platform == "wecom":
        return wecom_delivery(
            env,
            {
                "ToUserName": env["SANDBOX_WECOM_CORPID"],
                "FromUserName": xml_text(_im_id(platform, press.presser)) or "?",
                "CreateTime": int(time.time()),
                "MsgType": "event",
                "Event": "template_card_event",
                "EventKey": f"{press.action}:{source}",
                "TaskId": xml_text(handle) or "?",  # XML's text, never empty: what WeCom sends
                "CardType": "button_interaction",
                "ResponseCode": press.code.id if press.code else card.code,
                "AgentID": env["SANDBOX_WECOM_AGENTID"],
            },
        )
    if platform == "dingtalk":
        params = {"source_id": source, "comment": press.comment}
        private = {"actionIds": [press.action], "params": params}
        return dingtalk_delivery(
            env,
            {
                "EventType": "/v1.0/card/instances/callback",
                "outTrackId": handle,
                "corpId": env["SANDBOX_DINGTALK_CORP_ID"],
                "userId": _im_id(platform, press.presser),
                "type": "actionCallback",
                "content": json.dumps({"cardPrivateData": private}),
                "extension": "{}",
            },
        )
    event = {
        "operator": {**_feishu_ids(store, press.presser), "tenant_key": "t"},
        "token": f"c-{uuid.uuid4().hex}",
        "action": {
            "value": {"action": press.action, "source_id": source},
            "tag": "button",
            "form_value": {"comment": press.comment},
        },
        "host": "im_message",
        "context": {"open_message_id": handle, "open_chat_id": "oc_x"},
    }
    return feishu_delivery(env, "card.action.trigger", event)


def _im_id(platform: str, who: str | Stranger) -> str:
    if isinstance(who, Stranger):
        return who.id
    return wecom_id(who) if platform == "wecom" else dingtalk_id(who)


def card_updates(platform: str, ledger: Ledger, card: Card) -> list[Mapping[str, Any]]:
    """The updates of the card made since the ledger's mark."""
    if platform == "wecom":  # by response code: the press's own, or the one its send returned
        return ledger.bodies("wecom", "message/update_template_card")
    if platform == "dingtalk":
        found = ledger.bodies("dingtalk", "card/instances")
        return [body for body in found if body.get("outTrackId") == card.handle]
    found = ledger.bodies("feishu", "PATCH /open-apis/im/v1/messages/:message_id")
    return [body for body in found if body.get("message_id") == card.handle]


@pytest.fixture
def plain_updates(
    rt: Runtime, service: Service, sandbox: SandboxClient, sandbox_store: SandboxStore
) -> Callable[[str, str], Any]:
    """The structure of a card updated after a plain press, per (platform, action), made
    once per test on a card of its own."""
    made: dict[tuple[str, str], Any] = {}

    def structure(platform: str, action: str) -> Any:
        if (platform, action) not in made:
            plain = Ledger(sandbox)
            card = carded(platform, rt, sandbox)
            plain.move_on()
            press = Pressing(action, APPROVER, None, None, None, "Looks fine")
            delivery = pressed(platform, service.env, sandbox_store, card, press)
            settled(delivered(service, rt, platform, delivery))
            [update] = card_updates(platform, plain, card)
            made[platform, action] = update_structure(platform, update, card)
        return made[platform, action]

    return structure


def update_structure(platform: str, update: Mapping[str, Any], card: Card) -> Any:
    return without_id(UPDATE_STRUCTURES[platform](update), card.request_id, card.request_id)


@pytest.mark.parametrize("platform", sorted(APPROVAL_FLOWS))
@bounded(20)
@given(press=pressings)
@example(press=CLASSIC)
def test_given_any_card_press_the_oa_decides_at_most_once_and_the_card_keeps_its_structure(
    platform: str,
    rt: Runtime,
    service: Service,
    sandbox: SandboxClient,
    sandbox_store: SandboxStore,
    ledger: Ledger,
    plain_updates: Callable[[str, str], Any],
    press: Pressing,
) -> None:
    card = carded(platform, rt, sandbox)
    ledger.move_on()

    rows = delivered(
        service, rt, platform, pressed(platform, service.env, sandbox_store, card, press)
    )

    settled(rows)
    decided = oa_actions(sandbox, card.request_id)
    if not press.decides():
        assert decided == []
        assert card_updates(platform, ledger, card) == []
        return
    assert decided == [(press.action, oa_id(APPROVER))]
    comment = "" if platform == "wecom" else clean_text(press.comment).strip()
    assert oa_remarks(sandbox, card.request_id) == [comment]
    updates = card_updates(platform, ledger, card)
    letters = letters_of(rt, APPROVAL_FLOWS[platform], card.request_id)
    assert len(updates) + len(letters) == 1, (updates, letters)
    for update in updates:
        assert is_clean(json.dumps(update, ensure_ascii=False))
        assert update_structure(platform, update, card) == plain_updates(platform, press.action)
