"""Forged, stale and replayed deliveries are refused and counted; a repeated event has one effect.

Every case starts from a genuine callback the sandbox signed (caught by a recorder before the
service saw it), then sends it as it was, tampered with, or signed again with the vendor's
scheme as the sandbox implements it (sandbox/wxcrypto.py, sandbox/feishu/callbacks.py): never
with the service's own verify.py, which would agree with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest
import requests
from lark_oapi.core.utils import AESCipher  # type: ignore[import-untyped]

from sync_pipeline.devtools.sandbox.dingtalk import instance_id_for
from sync_pipeline.devtools.sandbox.feishu import encrypt_event, sign_event
from sync_pipeline.devtools.sandbox.wecom import userid_for
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt
from sync_pipeline.state import inbound
from tests.conftest import wait_for
from tests.webhooks.conftest import Captured, capture

WORLD = World(7)
STALE_S = 3600  # far outside the shipped 300 s window


def _flip(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


class Case:
    """How to make one vendor send a genuine callback, and how to change it."""

    platform: str

    def press(self, sandbox) -> None:
        raise NotImplementedError

    def forged(self, captured: Captured) -> dict[str, Any]:
        raise NotImplementedError

    def signed_at(self, captured: Captured, env, timestamp: float) -> dict[str, Any]:
        """The same event, signed again by the vendor's scheme as of `timestamp`."""
        raise NotImplementedError


class OA(Case):
    platform = "oa"

    def press(self, sandbox) -> None:
        sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")

    def forged(self, captured):
        signature = captured.headers["x-oa-signature"]
        return {"headers": {**captured.headers, "x-oa-signature": _flip(signature)}}

    def signed_at(self, captured, env, timestamp):
        ts = str(int(timestamp))
        key = env["SANDBOX_OA_WEBHOOK_SECRET"].encode()
        digest = hmac.new(key, ts.encode() + b"." + captured.body, hashlib.sha256).hexdigest()
        return {"headers": {**captured.headers, "x-oa-timestamp": ts, "x-oa-signature": digest}}


class WXCase(Case):
    """WeCom and DingTalk: WXBizMsgCrypt, the signature in the query."""

    def crypto(self, env) -> WXBizMsgCrypt:
        raise NotImplementedError

    def encrypt_of(self, captured: Captured) -> str:
        raise NotImplementedError

    def stamp(self, timestamp: float) -> str:
        return str(int(timestamp))

    def forged(self, captured):
        return {
            "query": {**captured.query, "msg_signature": _flip(captured.query["msg_signature"])}
        }

    def signed_at(self, captured, env, timestamp):
        crypto = self.crypto(env)
        old = self.encrypt_of(captured)
        sealed = crypto.seal(crypto.decrypt(old), timestamp=self.stamp(timestamp))
        query = {
            "msg_signature": sealed.msg_signature,
            "timestamp": sealed.timestamp,
            "nonce": sealed.nonce,
        }
        return {
            "query": query,
            "body": captured.body.replace(old.encode(), sealed.encrypt.encode()),
        }


class WeCom(WXCase):
    platform = "wecom"

    def press(self, sandbox) -> None:
        user = userid_for(WORLD.person("E00002"))
        sandbox.press("wecom", {"kind": "message", "userid": user, "content": "hello"})

    def crypto(self, env):
        return WXBizMsgCrypt(
            env["SANDBOX_WECOM_TOKEN"],
            env["SANDBOX_WECOM_ENCODING_AES_KEY"],
            env["SANDBOX_WECOM_CORPID"],
        )

    def encrypt_of(self, captured):
        found = re.search(rb"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", captured.body)
        assert found is not None
        return found.group(1).decode()


class DingTalk(WXCase):
    platform = "dingtalk"

    def press(self, sandbox) -> None:
        pending = next(a for a in WORLD.approvals(20) if a.state == "pending")
        instance = instance_id_for(WORLD, pending)
        sandbox.press(
            "dingtalk",
            {"kind": "bpms_instance_change", "process_instance_id": instance, "type": "start"},
        )

    def crypto(self, env):
        return WXBizMsgCrypt(
            env["SANDBOX_DINGTALK_TOKEN"],
            env["SANDBOX_DINGTALK_AES_KEY"],
            env["SANDBOX_DINGTALK_APP_KEY"],
        )

    def encrypt_of(self, captured):
        return str(json.loads(captured.body)["encrypt"])

    def stamp(self, timestamp):
        return str(int(timestamp * 1000))  # DingTalk signs milliseconds


class Feishu(Case):
    platform = "feishu"

    def press(self, sandbox) -> None:
        sandbox.press("feishu", {"kind": "message", "user": "E00002", "text": "hello"})

    def forged(self, captured):
        signature = captured.headers["x-lark-signature"]
        return {"headers": {**captured.headers, "x-lark-signature": _flip(signature)}}

    def signed_at(self, captured, env, timestamp):
        ts, nonce = str(int(timestamp)), f"n{time.monotonic_ns()}"
        signature = sign_event(ts, nonce, env["SANDBOX_FEISHU_ENCRYPT_KEY"], captured.body)
        headers = {
            **captured.headers,
            "x-lark-request-timestamp": ts,
            "x-lark-request-nonce": nonce,
            "x-lark-signature": signature,
        }
        return {"headers": headers}


class Agora(Case):
    platform = "agora"

    def press(self, sandbox) -> None:
        sandbox.press("agora", {"kind": "message", "from": "e00002", "to": "e00003", "msg": "hi"})

    def forged(self, captured):
        callback = json.loads(captured.body)
        callback["security"] = _flip(callback["security"])
        return {"body": json.dumps(callback).encode()}

    def signed_at(self, captured, env, timestamp):
        callback = json.loads(captured.body)
        stamp = int(timestamp * 1000)
        text = f"{callback['callId']}{env['SANDBOX_AGORA_CALLBACK_SECRET']}{stamp}"
        callback.update(timestamp=stamp, security=hashlib.md5(text.encode()).hexdigest())  # noqa: S324
        return {"body": json.dumps(callback).encode()}


CASES = [OA(), WeCom(), DingTalk(), Feishu(), Agora()]


def ids(case: Case) -> str:
    return case.platform


@pytest.fixture
def genuine(sandbox, service, recorder, request) -> Captured:
    case: Case = request.param
    return capture(sandbox, service, recorder, case.platform, lambda: case.press(sandbox))


def nothing_recorded(service, platform: str) -> bool:
    return service.rows(platform) == [] and service.enqueued() == 0


@pytest.mark.parametrize(
    ("case", "genuine"), [(c, c) for c in CASES], ids=ids, indirect=["genuine"]
)
def test_given_a_forged_signature_it_is_refused_counted_and_nothing_is_enqueued(
    service, case, genuine
) -> None:
    answer = genuine.send(service.endpoint(case.platform), **case.forged(genuine))

    assert answer.status_code == 401
    assert service.refusals(case.platform) == {"bad_signature": 1}
    assert nothing_recorded(service, case.platform)


@pytest.mark.parametrize(
    ("case", "genuine"), [(c, c) for c in CASES], ids=ids, indirect=["genuine"]
)
def test_given_a_stale_timestamp_it_is_refused_counted_and_nothing_is_enqueued(
    service, case, genuine
) -> None:
    stale = case.signed_at(genuine, service.env, time.time() - STALE_S)

    answer = genuine.send(service.endpoint(case.platform), **stale)

    assert answer.status_code == 401
    assert service.refusals(case.platform) == {"stale": 1}
    assert nothing_recorded(service, case.platform)


@pytest.mark.parametrize(
    ("case", "genuine"), [(c, c) for c in CASES], ids=ids, indirect=["genuine"]
)
def test_given_the_identical_request_again_it_is_refused_as_a_replay(
    service, case, genuine
) -> None:
    url = service.endpoint(case.platform)
    first = genuine.send(url)

    again = genuine.send(url)

    assert (first.status_code, again.status_code) == (200, 409)
    assert service.refusals(case.platform) == {"replay": 1}
    assert len(service.rows(case.platform)) == 1
    assert service.wait_enqueued(1) == 1


@pytest.mark.parametrize(
    ("case", "genuine"), [(c, c) for c in CASES], ids=ids, indirect=["genuine"]
)
def test_given_the_same_event_signed_afresh_it_is_recorded_and_enqueued_once(
    service, case, genuine
) -> None:
    url = service.endpoint(case.platform)
    first = genuine.send(url)
    # The vendor's retry, a second later: never in the second the original was signed in,
    # where the OA (no nonce) would sign it identically, and the service rightly say "replay".
    retried_at = time.time() + 1

    again = genuine.send(url, **case.signed_at(genuine, service.env, retried_at))

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(service.rows(case.platform)) == 1
    assert service.wait_enqueued(1) == 1
    assert service.refusals(case.platform) == {"duplicate": 1}


@pytest.mark.parametrize(
    ("case", "genuine"), [(c, c) for c in CASES], ids=ids, indirect=["genuine"]
)
def test_given_redis_lost_the_replay_memory_a_second_delivery_still_has_one_row(
    service, case, genuine
) -> None:
    url = service.endpoint(case.platform)
    genuine.send(url)
    service.wait_enqueued(1)
    service.redis.flushdb()  # Redis keeps nothing on disk: a restart forgets it all

    again = genuine.send(url)

    assert again.status_code == 200
    assert len(service.rows(case.platform)) == 1
    assert service.enqueued() == 0  # the first task went with Redis; nothing new was sent
    assert service.refusals(case.platform) == {"duplicate": 1}


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_given_the_duplicate_webhook_fault_the_event_is_recorded_and_enqueued_once(
    sandbox, service, case
) -> None:
    sandbox.fault(case.platform, "duplicate_webhook")

    case.press(sandbox)

    service.wait_rows(case.platform, 1)
    wait_for(
        lambda: service.refusals(case.platform) == {"replay": 1},
        20,
        what="the second copy counted as a replay",
    )
    assert len(service.rows(case.platform)) == 1
    assert service.wait_enqueued(1) == 1


def test_a_feishu_event_with_another_verification_token_is_refused(
    sandbox, service, recorder
) -> None:
    case = Feishu()
    genuine = capture(sandbox, service, recorder, "feishu", lambda: case.press(sandbox))
    key = service.env["SANDBOX_FEISHU_ENCRYPT_KEY"]
    event = json.loads(AESCipher(key).decrypt_str(json.loads(genuine.body)["encrypt"]))
    event["header"]["token"] = "not-our-verification-token"
    body = json.dumps({"encrypt": encrypt_event(key, json.dumps(event).encode())}).encode()
    forged = Captured(genuine.method, genuine.query, genuine.headers, body)

    answer = forged.send(
        service.endpoint("feishu"), **case.signed_at(forged, service.env, time.time())
    )

    assert answer.status_code == 403
    assert service.refusals("feishu") == {"bad_signature": 1}
    assert nothing_recorded(service, "feishu")


def test_a_wecom_message_encrypted_for_another_corp_is_refused(sandbox, service, recorder) -> None:
    case = WeCom()
    genuine = capture(sandbox, service, recorder, "wecom", lambda: case.press(sandbox))
    env = service.env
    ours = case.crypto(env)
    theirs = WXBizMsgCrypt(env["SANDBOX_WECOM_TOKEN"], env["SANDBOX_WECOM_ENCODING_AES_KEY"], "ww0")
    old = case.encrypt_of(genuine)
    sealed = theirs.seal(ours.decrypt(old))
    query = {
        "msg_signature": sealed.msg_signature,
        "timestamp": sealed.timestamp,
        "nonce": sealed.nonce,
    }

    answer = genuine.send(
        service.endpoint("wecom"),
        query=query,
        body=genuine.body.replace(old.encode(), sealed.encrypt.encode()),
    )

    assert answer.status_code == 403
    assert service.refusals("wecom") == {"bad_signature": 1}
    assert nothing_recorded(service, "wecom")


def test_a_signed_oa_body_that_is_not_json_is_refused_as_malformed(
    sandbox, service, recorder
) -> None:
    case = OA()
    genuine = capture(sandbox, service, recorder, "oa", lambda: case.press(sandbox))
    broken = Captured(genuine.method, genuine.query, genuine.headers, b"<html>not json</html>")

    answer = broken.send(service.endpoint("oa"), **case.signed_at(broken, service.env, time.time()))

    assert answer.status_code == 400
    assert service.refusals("oa") == {"malformed": 1}
    assert nothing_recorded(service, "oa")


def test_a_webhook_for_an_unknown_connector_is_not_found_and_not_counted(service) -> None:
    answer = requests.post(f"{service.url}/webhooks/no_such_connector", data=b"{}", timeout=10)

    assert answer.status_code == 404
    with service.engine.connect() as conn:
        assert inbound.refusals(conn) == {}
