"""Malformed deliveries are counted `malformed` refusals with a 4xx, never a 500: bodies nested
too deep, XML with a DTD or nested too deep, timestamps that are not finite numbers, and ids
too long to keep are bounded before anything is parsed or stored (issue 9, points 4 and 5).

The bodies that need a signature are signed with the vendor's scheme as the sandbox implements
it (sandbox/wxcrypto.py, sandbox/feishu/callbacks.py), never with the service's own verify.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt
from sync_pipeline.untrusted import MAX_ID_CHARS
from tests.webhooks.conftest import Service, post

DEEP = 100_000
FORGED_WX_QUERY = {"msg_signature": "0" * 40, "timestamp": "1", "nonce": "n"}


def deep_json(depth: int = DEEP) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def deep_xml(depth: int = DEEP) -> bytes:
    return b"<xml>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</xml>"


def signed_oa(service: Service, body: bytes, timestamp: str) -> dict[str, str]:
    secret = service.env["SANDBOX_OA_WEBHOOK_SECRET"].encode()
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-OA-Timestamp": timestamp, "X-OA-Signature": digest}


def oa_change(event_id: str) -> bytes:
    return json.dumps(
        {
            "event": "request.approved",
            "eventId": event_id,
            "requestId": "R000001",
            "status": "approved",
            "lastOperateTime": "2026-03-02 17:30:00",
        }
    ).encode()


@pytest.mark.parametrize(
    ("platform", "query"),
    [
        ("agora", {}),
        ("dingtalk", FORGED_WX_QUERY),
        ("feishu", {}),  # no signature: Feishu's url_verification may come unsigned
        ("feishu", {"callback": "quick_approval"}),
    ],
    ids=["agora", "dingtalk", "feishu", "feishu-quick-approval"],
)
def test_given_json_nested_100000_deep_it_is_a_counted_malformed_refusal(
    service, platform, query
) -> None:
    answer = post(service.endpoint(platform), deep_json(), params=query)

    assert answer.status_code == 400
    assert answer.json() == {"error": "malformed"}
    assert service.refusals(platform) == {"malformed": 1}


def test_given_xml_nested_100000_deep_to_wecom_it_is_a_counted_malformed_refusal(service) -> None:
    answer = post(service.endpoint("wecom"), deep_xml(), params=FORGED_WX_QUERY)

    assert answer.status_code == 400
    assert service.refusals("wecom") == {"malformed": 1}


def test_given_xml_with_an_entity_to_wecom_it_is_refused_before_expansion(service) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    )

    answer = post(service.endpoint("wecom"), bomb, params=FORGED_WX_QUERY)

    assert answer.status_code == 400
    assert service.refusals("wecom") == {"malformed": 1}


def test_given_a_signed_wecom_message_nested_too_deep_it_is_malformed(service) -> None:
    env = service.env
    crypto = WXBizMsgCrypt(
        env["SANDBOX_WECOM_TOKEN"],
        env["SANDBOX_WECOM_ENCODING_AES_KEY"],
        env["SANDBOX_WECOM_CORPID"],
    )
    sealed = crypto.seal(deep_xml(10_000).decode(), timestamp=str(int(time.time())))
    query = {"msg_signature": sealed.msg_signature, "timestamp": sealed.timestamp}
    envelope = f"<xml><Encrypt><![CDATA[{sealed.encrypt}]]></Encrypt></xml>".encode()

    answer = post(service.endpoint("wecom"), envelope, params={**query, "nonce": sealed.nonce})

    assert answer.status_code == 400
    assert service.refusals("wecom") == {"malformed": 1}


@pytest.mark.parametrize("timestamp", ["nan", "NaN", "inf", "-inf", "1e400", "9" * 400])
def test_given_a_signed_oa_webhook_whose_timestamp_is_not_finite_it_is_malformed(
    service, timestamp
) -> None:
    body = oa_change("e-1")

    answer = post(service.endpoint("oa"), body, headers=signed_oa(service, body, timestamp))

    assert answer.status_code == 400
    assert service.refusals("oa") == {"malformed": 1}


@pytest.mark.parametrize("timestamp", ["-1", "0", "1e300", str(10**18)])
def test_given_a_signed_oa_webhook_whose_timestamp_is_far_off_it_is_stale(
    service, timestamp
) -> None:
    body = oa_change("e-1")

    answer = post(service.endpoint("oa"), body, headers=signed_oa(service, body, timestamp))

    assert answer.status_code == 401
    assert service.refusals("oa") == {"stale": 1}


def test_given_a_signed_oa_webhook_with_a_100000_character_event_id_the_id_kept_is_bounded(
    service,
) -> None:
    long_id = "L" * 100_000
    body = oa_change(long_id)

    answer = post(
        service.endpoint("oa"), body, headers=signed_oa(service, body, str(int(time.time())))
    )

    assert answer.status_code == 200
    [row] = service.rows("oa")
    assert len(row.event.event_id) <= MAX_ID_CHARS
    assert row.event.event_id.startswith("L" * 100)


def test_given_two_long_event_ids_that_differ_only_at_the_end_both_are_kept(service) -> None:
    for last in "ab":
        body = oa_change("L" * 100_000 + last)
        headers = signed_oa(service, body, str(int(time.time())))
        assert post(service.endpoint("oa"), body, headers=headers).status_code == 200

    assert len({row.event.event_id for row in service.rows("oa")}) == 2
