"""WXBizMsgCrypt against the vendors' own published samples, then its edges.

The vectors are the vendors', not ours: an implementation that agreed only with itself would
pass a round trip and still fail every real receiver.
"""

from __future__ import annotations

import base64
import textwrap

import pytest

from sync_pipeline.devtools.sandbox.wxcrypto import (
    BLOCK,
    CryptoError,
    ReceiveIdMismatch,
    SignatureMismatch,
    WXBizMsgCrypt,
    new_aes_key,
    signature,
)

# WeCom's sample in its callback docs and in the official WXBizMsgCrypt SDKs (Sample.cs & co).
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORPID = "wx5823bf96d3bd56c7"
WECOM_VERIFY = {  # GET ?msg_signature&timestamp&nonce&echostr, the URL-verification sample
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}
WECOM_MESSAGE = {  # POST /cgi-bin/wxpush?msg_signature=...: the encrypted message sample
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
    "encrypt": (
        "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczcd"
        "CUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4"
        "Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r"
        "+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx"
        "4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyP"
        "IGHBZZIs2pDBS8R07+qN+E7Q=="
    ),
}

# DingTalk's sample at the end of open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py.
DING_TOKEN = "mryue"
DING_AES_KEY = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
DING_OWNER = "ding6ccabc44d2c8d38b"
DING_CHECK_URL = {
    "msg_signature": "03044561471240d4a14bb09372dfcfd4fd0e40cb",
    "timestamp": "1608001896814",  # DingTalk signs with a millisecond timestamp
    "nonce": "WL4PK6yA",
    "encrypt": (
        "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDC"
        "YxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
    ),
}


@pytest.fixture
def wecom() -> WXBizMsgCrypt:
    return WXBizMsgCrypt(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)


def test_wecom_published_url_verification_sample_decrypts_to_its_echo(wecom):
    v = WECOM_VERIFY

    plain = wecom.verify(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"])

    assert plain == "1616140317555161061"


def test_wecom_published_message_sample_decrypts_to_its_xml(wecom):
    m = WECOM_MESSAGE

    plain = wecom.verify(m["msg_signature"], m["timestamp"], m["nonce"], m["encrypt"])

    assert plain.startswith("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>")
    assert "<Content><![CDATA[hello]]></Content>" in plain
    assert "<MsgId>4561255354251345929</MsgId>" in plain


def test_dingtalk_published_check_url_sample_decrypts_with_the_owner_key():
    crypto = WXBizMsgCrypt(DING_TOKEN, DING_AES_KEY, DING_OWNER)
    c = DING_CHECK_URL

    plain = crypto.verify(c["msg_signature"], c["timestamp"], c["nonce"], c["encrypt"])

    assert plain == '{"EventType":"check_url"}'


def test_signature_is_sha1_of_sorted_parts_without_separator():
    expected = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    v = WECOM_VERIFY

    assert signature(WECOM_TOKEN, v["timestamp"], v["nonce"], v["echostr"]) == expected


def test_round_trip_keeps_non_ascii_text(wecom):
    sealed = wecom.seal("<xml><Content><![CDATA[审批通过 ✓]]></Content></xml>")

    plain = wecom.verify(sealed.msg_signature, sealed.timestamp, sealed.nonce, sealed.encrypt)

    assert plain == "<xml><Content><![CDATA[审批通过 ✓]]></Content></xml>"


def test_fixed_random_prefix_reproduces_the_same_ciphertext(wecom):
    assert wecom.encrypt("abc", rand16=b"0123456789abcdef") == wecom.encrypt(
        "abc", rand16=b"0123456789abcdef"
    )


def test_padding_uses_blocks_of_32_bytes_even_when_aligned(wecom):
    # 16 random + 4 length + 12 message + 18 corpid = 50 bytes -> padded to 64.
    assert len(base64.b64decode(wecom.encrypt("x" * 12))) == 64
    # 16 + 4 + 26 + 18 = 64 bytes, already aligned -> a whole extra block of padding.
    assert len(base64.b64decode(wecom.encrypt("x" * 26))) == 64 + BLOCK


def test_tampered_ciphertext_fails_the_signature_check(wecom):
    sealed = wecom.seal("hello")
    forged = sealed.encrypt[:-4] + ("AAA=" if not sealed.encrypt.endswith("AAA=") else "BBB=")

    with pytest.raises(SignatureMismatch):
        wecom.verify(sealed.msg_signature, sealed.timestamp, sealed.nonce, forged)


def test_message_for_another_receiver_is_refused(wecom):
    other = WXBizMsgCrypt(WECOM_TOKEN, WECOM_AES_KEY, "ww-another-corp")
    sealed = other.seal("hello")

    with pytest.raises(ReceiveIdMismatch):
        wecom.verify(sealed.msg_signature, sealed.timestamp, sealed.nonce, sealed.encrypt)


def test_ciphertext_with_line_breaks_still_decrypts(wecom):
    # DingCallbackCrypto3.py emits base64.encodebytes output: a line break every 76 characters.
    encrypt = wecom.encrypt("a longer message " * 8)
    wrapped = "\n".join(textwrap.wrap(encrypt, 76)) + "\n"

    assert wecom.decrypt(wrapped) == "a longer message " * 8


def test_garbage_is_a_crypto_error_not_a_crash(wecom):
    with pytest.raises(CryptoError):
        wecom.decrypt("bm90IGEgY2lwaGVydGV4dA==")


def test_new_aes_key_has_43_characters_that_decode_to_32_bytes():
    key = new_aes_key()

    assert len(key) == 43
    assert len(base64.b64decode(key + "=")) == 32


def test_key_of_wrong_length_is_refused():
    with pytest.raises(CryptoError):
        WXBizMsgCrypt("token", "tooshort", "corp")
