"""verify.py against the vendors' published test vectors and their official SDKs.

The vectors are the vendors' (WeCom's callback docs and WXBizMsgCrypt samples, DingTalk's
DingCallbackCrypto3.py sample, Feishu's event-encryption example), and the SDKs (wechatpy,
lark-oapi) are independent implementations: a verify.py that agreed only with itself would
pass a round trip and still refuse every real vendor.
"""

from __future__ import annotations

import base64
import re

import pytest
from lark_oapi.core.utils import AESCipher  # type: ignore[import-untyped]
from wechatpy.enterprise.crypto import WeChatCrypto  # type: ignore[import-untyped]

from sync_pipeline.errors import Reason, Refused
from sync_pipeline.webhooks.verify import (
    WXCrypt,
    agora_security,
    check_window,
    feishu_decrypt,
    feishu_signature,
    oa_signature,
    wx_signature,
)

# WeCom's sample (callback docs; Sample.cs / Sample.py of the official WXBizMsgCrypt SDKs).
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORPID = "wx5823bf96d3bd56c7"
WECOM_VERIFY = (
    "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",  # msg_signature
    "1409659589",  # timestamp
    "263014780",  # nonce
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
)
WECOM_MESSAGE = (
    "477715d11cdb4164915debcba66cb864d751f3e6",
    "1409659813",
    "1372623149",
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczcd"
    "CUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4"
    "Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r"
    "+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx"
    "4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyP"
    "IGHBZZIs2pDBS8R07+qN+E7Q==",
)
# DingTalk's sample at the end of open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py.
DING_TOKEN, DING_AES_KEY, DING_OWNER = (
    "mryue",
    "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    "ding6ccabc44d2c8d38b",
)
DING_CHECK_URL = (
    "03044561471240d4a14bb09372dfcfd4fd0e40cb",
    "1608001896814",  # milliseconds
    "WL4PK6yA",
    "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDC"
    "YxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
)
# Feishu's example in "事件订阅: 加密" (and lark-oapi's decryptor): key "test key".
FEISHU_KEY, FEISHU_ENCRYPTED = "test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


@pytest.fixture
def wecom() -> WXCrypt:
    return WXCrypt(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)


def test_wecom_url_verification_sample_checks_and_decrypts_to_its_echo(wecom) -> None:
    signature, timestamp, nonce, echostr = WECOM_VERIFY

    wecom.check(signature, timestamp, nonce, echostr)

    assert wecom.decrypt(echostr) == "1616140317555161061"


def test_wecom_message_sample_checks_and_decrypts_to_its_xml(wecom) -> None:
    signature, timestamp, nonce, encrypt = WECOM_MESSAGE

    wecom.check(signature, timestamp, nonce, encrypt)
    plain = wecom.decrypt(encrypt)

    assert "<Content><![CDATA[hello]]></Content>" in plain
    assert "<MsgId>4561255354251345929</MsgId>" in plain


def test_dingtalk_check_url_sample_decrypts_with_the_owner_key() -> None:
    signature, timestamp, nonce, encrypt = DING_CHECK_URL
    dingtalk = WXCrypt(DING_TOKEN, DING_AES_KEY, DING_OWNER)

    dingtalk.check(signature, timestamp, nonce, encrypt)

    assert dingtalk.decrypt(encrypt) == '{"EventType":"check_url"}'


def test_the_signature_is_sha1_of_the_sorted_parts_without_separator() -> None:
    signature, timestamp, nonce, echostr = WECOM_VERIFY

    assert wx_signature(WECOM_TOKEN, timestamp, nonce, echostr) == signature


def test_a_tampered_signature_is_refused_as_forged(wecom) -> None:
    signature, timestamp, nonce, echostr = WECOM_VERIFY

    with pytest.raises(Refused) as refused:
        wecom.check(signature[:-1] + "0", timestamp, nonce, echostr)

    assert (refused.value.reason, refused.value.status) == (Reason.BAD_SIGNATURE, 401)


def test_a_message_for_another_receiver_is_refused_with_403() -> None:
    other = WXCrypt(WECOM_TOKEN, WECOM_AES_KEY, "ww-another-corp")

    with pytest.raises(Refused) as refused:
        other.decrypt(WECOM_VERIFY[3])

    assert (refused.value.reason, refused.value.status) == (Reason.BAD_SIGNATURE, 403)


def test_ciphertext_under_another_key_is_refused_not_crashed(wecom) -> None:
    with pytest.raises(Refused) as refused:
        wecom.decrypt(base64.b64encode(b"\x00" * 48).decode())

    assert refused.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("key", ["short", "!" * 43, WECOM_AES_KEY + "A"])
def test_an_encoding_aes_key_of_the_wrong_shape_is_a_value_error(key: str) -> None:
    with pytest.raises(ValueError, match="43-character"):
        WXCrypt(WECOM_TOKEN, key, WECOM_CORPID)


def test_wechatpy_encrypted_messages_check_and_decrypt(wecom) -> None:
    sdk = WeChatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)
    sealed = sdk.encrypt_message("<xml><Content>审批 ✓</Content></xml>", "n0nce", "1700000000")
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", sealed).group(1)
    signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", sealed).group(1)

    wecom.check(signature, "1700000000", "n0nce", encrypt)

    assert wecom.decrypt(encrypt) == "<xml><Content>审批 ✓</Content></xml>"


def test_what_we_seal_wechatpy_checks_and_decrypts(wecom) -> None:
    sealed = wecom.seal("success", "1700000000")
    sdk = WeChatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)

    plain = sdk.decrypt_message(
        {"Encrypt": sealed.encrypt}, sealed.msg_signature, sealed.timestamp, sealed.nonce
    )

    assert plain == "success"


def test_what_we_seal_pads_to_blocks_of_32_bytes(wecom) -> None:
    # 16 random + 4 length + 26 message + 18 corpid = 64 bytes: aligned, so a whole 32-byte
    # block of padding follows (platform-apis.md §1.2 step 3).
    assert len(base64.b64decode(wecom.encrypt("x" * 26))) == 96


def test_feishu_published_example_decrypts_as_lark_oapi_decrypts_it() -> None:
    assert feishu_decrypt(FEISHU_KEY, FEISHU_ENCRYPTED) == "hello world"
    assert AESCipher(FEISHU_KEY).decrypt_str(FEISHU_ENCRYPTED) == "hello world"


def test_feishu_ciphertext_under_another_key_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        feishu_decrypt("another key", FEISHU_ENCRYPTED)

    assert (refused.value.reason, refused.value.status) == (Reason.BAD_SIGNATURE, 403)


def test_feishu_signature_is_sha256_of_timestamp_nonce_key_and_raw_body() -> None:
    import hashlib

    expected = hashlib.sha256(b"1700000000" + b"abc" + b"test key" + b'{"encrypt":"x"}')

    assert feishu_signature("1700000000", "abc", "test key", b'{"encrypt":"x"}') == (
        expected.hexdigest()
    )


def test_oa_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()

    assert oa_signature("s3cret", "1700000000", b'{"a":1}') == expected


def test_agora_security_is_md5_of_call_id_secret_and_timestamp() -> None:
    import hashlib

    expected = hashlib.md5(b"key_uuid" + b"s3cret" + b"1700000000000").hexdigest()  # noqa: S324

    assert agora_security("key_uuid", "s3cret", "1700000000000") == expected


@pytest.mark.parametrize(
    ("timestamp", "now"),
    [("1700000000", 1700000299.0), ("1700000000000", 1699999701.0), ("1700000000", 1700000000.0)],
)
def test_a_timestamp_inside_the_window_passes_in_seconds_or_milliseconds(
    timestamp: str, now: float
) -> None:
    assert check_window(timestamp, now, 300) == 1700000000.0


@pytest.mark.parametrize("now", [1700000301.0, 1699999699.0])
def test_a_timestamp_outside_the_window_either_way_is_stale(now: float) -> None:
    with pytest.raises(Refused) as refused:
        check_window("1700000000", now, 300)

    assert refused.value.reason is Reason.STALE


def test_a_timestamp_that_is_not_a_number_is_malformed() -> None:
    with pytest.raises(Refused) as refused:
        check_window("yesterday", 1700000000.0, 300)

    assert refused.value.reason is Reason.MALFORMED
