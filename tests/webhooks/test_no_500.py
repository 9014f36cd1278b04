"""No request makes a vendor endpoint answer 500 (issue 9): whatever the body, the query and
the headers, the webhook service answers a 2xx or a 4xx, and a 4xx is one counted refusal.

Each endpoint is sent, through the real service over HTTP, two kinds of request:
- anything at all: random bytes, JSON and XML nested within and beyond the limits, bodies
  around the size limit, with random queries and headers (mostly refused before a signature
  checks out);
- the vendor's own envelope, signed and encrypted with the vendor's scheme as the sandbox
  implements it (never with verify.py), around a payload whose fields hold hostile values:
  NUL, lone surrogates, right-to-left marks, markup, long strings, wrong types, nesting,
  timestamps like `nan` or 10**20.

The number of examples is bounded so the whole module runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import hmac
import json
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipeline.devtools.sandbox.feishu import encrypt_event, sign_event
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt
from sync_pipeline.webhooks.app import MAX_BODY_BYTES
from sync_pipeline.webhooks.delivery import MAX_DEPTH
from tests.webhooks.conftest import FIXTURES, Service

EXAMPLES = 40
PLATFORMS = ["oa", "wecom", "dingtalk", "feishu", "feishu-quick-approval", "agora"]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Attempt:
    """One HTTP request to a connector's webhook."""

    method: str = "POST"
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def connector_path(platform: str) -> str:
    return "feishu" if platform == "feishu-quick-approval" else platform


def answered_without_500(service: Service, platform: str, attempt: Attempt) -> None:
    """Send `attempt`; a 2xx, or a 4xx counted once among the connector's refusals."""
    vendor = connector_path(platform)
    query = dict(attempt.query)
    if platform == "feishu-quick-approval":
        query["callback"] = "quick_approval"
    before = sum(service.refusals(vendor).values())

    answer = requests.request(
        attempt.method,
        service.endpoint(vendor),
        params=query,
        headers=dict(attempt.headers),
        data=attempt.body,
        timeout=30,
    )

    assert answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.status_code >= 400:
        assert sum(service.refusals(vendor).values()) == before + 1, answer.text[:200]
        assert "Traceback" not in answer.text


# -- what anyone can send ---------------------------------------------------------------------
def nested(depth: int, json_like: bool) -> bytes:
    if json_like:
        return b'{"a":[' * depth + b"1" + b"]}" * depth
    return b"<xml>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</xml>"


FRAGMENTS = (
    "\x00",
    "\u202e",
    "\u200f",
    "\ufeff",
    "@",
    "#important",
    "<at id=all></at>",
    "[x](http://evil.example)",
    "*_`~",
    '"',
    "\\",
    "&amp;",
    "]]>",
    "%s",
    "{{x}}",
)
HOSTILE_TEXT = st.lists(
    st.characters(exclude_categories=("Cs",)) | st.sampled_from(FRAGMENTS), max_size=20
).map("".join) | st.sampled_from(
    ["L" * 100_000, "é" * 50_000, "nan", "inf", "-1", "1e400", str(10**20), "9" * 400]
)
HEADER_TEXT = st.from_regex(r"\A(?:[!-~\xa1-\xff][ -~\xa0-\xff]{0,40})?\Z")  # what HTTP carries
QUERY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NAMES = ["msg_signature", "signature", "timestamp", "timeStamp", "nonce", "echostr", "callback"]
HEADER_NAMES = ["x-oa-timestamp", "x-oa-signature", "x-lark-signature"]
HEADER_NAMES += ["x-lark-request-timestamp", "x-lark-request-nonce", "content-type"]

anything = st.builds(
    Attempt,
    method=st.sampled_from(["POST", "POST", "POST", "GET"]),
    query=st.dictionaries(st.sampled_from(NAMES) | QUERY_TEXT, QUERY_TEXT, max_size=4),
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES) | st.from_regex(r"\Ax-[a-z]{1,10}\Z"), HEADER_TEXT
    ),
    body=st.one_of(
        st.binary(max_size=2_000),
        st.builds(
            nested, st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 1_000, 100_000]), st.booleans()
        ),
        st.sampled_from([b"", b"{}", b"[]", b"null", b"<xml/>", b'{"encrypt": "\\ud800"}']),
        st.sampled_from([b" " * MAX_BODY_BYTES, b" " * (MAX_BODY_BYTES + 1)]),
        st.builds(lambda s: json.dumps(s).encode(), HOSTILE_TEXT),
    ),
)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_given_any_request_no_endpoint_answers_500(service, platform) -> None:
    @SETTINGS
    @given(attempt=anything)
    def check(attempt: Attempt) -> None:
        answered_without_500(service, platform, attempt)

    check()


# -- the vendors' envelopes around hostile payloads ----------------------------------------------
# Each vendor's fixtures (the decoders' own, tests/webhooks/fixtures/) are the templates: a few
# of their fields, at any depth, are replaced by hostile values or dropped, so the decoders'
# deep paths are reached with everything but one or two fields as the vendor sends them.
MISSING = object()
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | HOSTILE_TEXT
    | st.text(st.characters(), max_size=10)  # lone surrogates, escaped as \ud800 in JSON
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
TIMES = st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "1e300", str(10**20)])
VALUES = st.one_of(
    HOSTILE_TEXT,
    st.none() | st.booleans() | st.integers(-(10**25), 10**25) | st.floats(allow_nan=False),
    st.lists(JSON_VALUES, max_size=3)
    | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
    TIMES,
    JSON_VALUES.map(json.dumps),  # fields that carry JSON in a string
    st.integers(0, 2 * MAX_DEPTH).map(lambda depth: json.dumps(deep_list(depth))),
    st.just(MISSING),
)


def deep_list(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def templates(vendor: str) -> list[Any]:
    return [
        json.loads(path.read_text("utf-8")) for path in sorted((FIXTURES / vendor).glob("*.json"))
    ]


def spots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    return [spot for key, child in items for spot in [(*path, key), *spots(child, (*path, key))]]


def changed(template: Any, changes: list[tuple[tuple[Any, ...], Any]]) -> Any:
    """A copy of `template` with each path set to its new value (MISSING: removed); a path
    that an earlier change took away is skipped."""
    result = copy.deepcopy(template)
    for path, new in changes:
        with contextlib.suppress(KeyError, IndexError, TypeError):
            parent = functools.reduce(operator.getitem, path[:-1], result)
            if new is MISSING:
                del parent[path[-1]]
            else:
                parent[path[-1]] = new
    return result


def hostile(candidates: list[Any]) -> st.SearchStrategy[Any]:
    """One of `candidates` with up to three of its fields changed."""

    def variants(template: Any) -> st.SearchStrategy[Any]:
        changes = st.lists(st.tuples(st.sampled_from(spots(template)), VALUES), max_size=3)
        return changes.map(lambda found: changed(template, found))

    return st.sampled_from(candidates).flatmap(variants)


def now_s() -> str:
    return str(int(time.time()))


def now_ms() -> str:
    return str(int(time.time() * 1000))


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


def stamps(now: Callable[[], str]) -> st.SearchStrategy[str]:
    """Mostly now (so the delivery gets past the window), sometimes a hostile timestamp."""
    return st.one_of(st.just(None).map(lambda _: now()), TIMES, HEADER_TEXT)


def oa_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    def build(payload: Any, stamp: str) -> Attempt:
        body = json_bytes(payload)
        secret = env["SANDBOX_OA_WEBHOOK_SECRET"].encode()
        signature = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return Attempt(headers={"X-OA-Timestamp": stamp, "X-OA-Signature": signature}, body=body)

    return st.builds(build, hostile(templates("oa")), stamps(now_s))


def wecom_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    crypto = WXBizMsgCrypt(
        env["SANDBOX_WECOM_TOKEN"],
        env["SANDBOX_WECOM_ENCODING_AES_KEY"],
        env["SANDBOX_WECOM_CORPID"],
    )
    xml_templates = [path.read_text("utf-8") for path in sorted((FIXTURES / "wecom").glob("*.xml"))]

    def build(xml: str, changes: list[tuple[int, Any]], stamp: str) -> Attempt:
        sealed = crypto.seal(changed_xml(xml, changes), timestamp=stamp)
        query = {"msg_signature": sealed.msg_signature, "timestamp": stamp, "nonce": sealed.nonce}
        body = f"<xml><Encrypt><![CDATA[{sealed.encrypt}]]></Encrypt></xml>".encode()
        return Attempt(query=query, body=body)

    change = st.tuples(st.integers(0, 40), VALUES | st.integers(1, 2 * MAX_DEPTH).map(Deeper))
    return st.builds(
        build, st.sampled_from(xml_templates), st.lists(change, max_size=3), stamps(now_s)
    )


@dataclass(frozen=True)
class Deeper:
    """An XML change: put a chain of `depth` nested elements under the element."""

    depth: int


def changed_xml(xml: str, changes: list[tuple[int, Any]]) -> str:
    """`xml` with elements (by document order, modulo their number) given hostile text,
    removed (MISSING), repeated (a dict or list value) or nested deeper (Deeper)."""
    root = ElementTree.fromstring(xml)  # noqa: S314 - our own fixtures
    for index, new in changes:
        elements = list(root.iter())[1:]
        parents = {child: parent for parent in root.iter() for child in parent}
        element = elements[index % len(elements)]
        if new is MISSING:
            parents[element].remove(element)
        elif isinstance(new, Deeper):
            for _ in range(new.depth):
                element = ElementTree.SubElement(element, "a")
        elif isinstance(new, dict | list):
            parents[element].append(copy.deepcopy(element))
        else:
            element.text = xml_text(new if isinstance(new, str) else json.dumps(new))
    return ElementTree.tostring(root, encoding="unicode")


def xml_text(text: str) -> str:
    """A hostile value as XML can carry it: its forbidden characters left out."""
    return "".join(
        c for c in text if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"
    )


def dingtalk_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    crypto = WXBizMsgCrypt(
        env["SANDBOX_DINGTALK_TOKEN"],
        env["SANDBOX_DINGTALK_AES_KEY"],
        env["SANDBOX_DINGTALK_APP_KEY"],
    )

    def build(event: Any, stamp: str) -> Attempt:
        sealed = crypto.seal(json.dumps(event, ensure_ascii=True), timestamp=stamp)
        query = {"msg_signature": sealed.msg_signature, "timestamp": stamp, "nonce": sealed.nonce}
        return Attempt(query=query, body=json_bytes({"encrypt": sealed.encrypt}))

    return st.builds(build, hostile(templates("dingtalk")), stamps(now_ms))


def with_token(payload: Any, token: str) -> Any:
    """The payload carrying our Verification Token where Feishu puts it (v2: header.token)."""
    if isinstance(payload, dict) and isinstance(payload.get("header"), dict):
        return {**payload, "header": {**payload["header"], "token": token}}
    return {**payload, "token": token} if isinstance(payload, dict) else payload


def feishu_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    key, token = env["SANDBOX_FEISHU_ENCRYPT_KEY"], env["SANDBOX_FEISHU_VERIFICATION_TOKEN"]

    def build(payload: Any, stamp: str) -> Attempt:
        plaintext = json_bytes(with_token(payload, token))
        body = json_bytes({"encrypt": encrypt_event(key, plaintext)})
        nonce = f"n{time.monotonic_ns()}"
        headers = {
            "X-Lark-Request-Timestamp": stamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": sign_event(stamp, nonce, key, body),
        }
        return Attempt(headers=headers, body=body)

    return st.builds(build, hostile(templates("feishu")), stamps(now_s))


QUICK_APPROVAL = {
    "action_type": "APPROVE",
    "action_context": json.dumps({"source_id": "R000042", "open_id": "ou_3a1f2b4c5d6e7f80"}),
    "user_id": "e33ggbyz",
    "approval_code": "oa",
    "instance_id": "R000042",
    "task_id": "7026591166355210260",
    "reason": "ok",
}


def quick_approval_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    key, token = env["SANDBOX_FEISHU_ENCRYPT_KEY"], env["SANDBOX_FEISHU_VERIFICATION_TOKEN"]

    def build(payload: Any) -> Attempt:
        plaintext = json_bytes(with_token(payload, token))
        return Attempt(body=json_bytes({"encrypt": encrypt_event(key, plaintext)}))

    return st.builds(build, hostile([QUICK_APPROVAL]))


def agora_attempt(env: Mapping[str, str]) -> st.SearchStrategy[Attempt]:
    """Agora signs callId and timestamp inside the body: those two stay what Agora sends (a
    string, a number), whatever else changes."""
    secret = env["SANDBOX_AGORA_CALLBACK_SECRET"]

    def build(callback: Any, call_id: str, stamp: str) -> Attempt:
        callback = callback if isinstance(callback, dict) else {"payload": callback}
        security = hashlib.md5(f"{call_id}{secret}{stamp}".encode()).hexdigest()  # noqa: S324
        body = {**callback, "callId": call_id, "timestamp": stamp, "security": security}
        return Attempt(body=json_bytes(body))

    call_id = st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1
    )
    return st.builds(build, hostile(templates("agora")), call_id, stamps(now_ms))


ENVELOPES: Mapping[str, Callable[[Mapping[str, str]], st.SearchStrategy[Attempt]]] = {
    "oa": oa_attempt,
    "wecom": wecom_attempt,
    "dingtalk": dingtalk_attempt,
    "feishu": feishu_attempt,
    "feishu-quick-approval": quick_approval_attempt,
    "agora": agora_attempt,
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_given_a_signed_envelope_with_hostile_fields_no_endpoint_answers_500(
    service, platform
) -> None:
    @SETTINGS
    @given(attempt=ENVELOPES[platform](service.env))
    def check(attempt: Attempt) -> None:
        answered_without_500(service, platform, attempt)

    check()
