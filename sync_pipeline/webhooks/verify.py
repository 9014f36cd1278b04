"""Signatures, decryption and the timestamp window of the vendors' callbacks.

Written from the contracts in platform-apis.md (§1.2 WeCom, §2.2 DingTalk, §3.2 Feishu, §4
Slack, §6 Agora, and the OA's change webhook), never from the sandbox's emulators: they
implement the same crypto independently, so a callback the sandbox sends and this module
accepts checks both.
Every failure raises `Refused` with the reason the service counts; nothing here parses a
payload, and no secret or ciphertext reaches an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sync_pipeline.errors import Reason, Refused

WX_BLOCK = 32  # WXBizMsgCrypt pads to 32 bytes, not AES's 16 (platform-apis.md §1.2 step 3)
MS_THRESHOLD = 10**11  # above this a Unix timestamp is in milliseconds (DingTalk sends ms)


def forged(detail: str) -> Refused:
    """A signature that does not match: 401."""
    return Refused(Reason.BAD_SIGNATURE, detail)


def undecryptable(detail: str) -> Refused:
    """Signed right but not ours to read (wrong key, wrong receiver, bad token): 403."""
    return Refused(Reason.BAD_SIGNATURE, detail, status=403)


def malformed(detail: str) -> Refused:
    return Refused(Reason.MALFORMED, detail)


def same(presented: str, expected: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def timestamp_s(text: str) -> float:
    """A signed Unix timestamp in seconds, whether it was sent in seconds or milliseconds.
    `nan` and `inf` are refused here: every comparison with NaN is false, so a NaN would pass
    any window."""
    try:
        value = float(text)
    except ValueError:
        raise malformed("the timestamp is not a number") from None
    if not math.isfinite(value):
        raise malformed("the timestamp is not a finite number")
    return value / 1000 if value > MS_THRESHOLD else value


def check_window(text: str, now: float, window_s: float) -> float:
    """The request's time in seconds, if it lies within `window_s` of `now` either way."""
    sent = timestamp_s(text)
    if abs(now - sent) > window_s:
        raise Refused(
            Reason.STALE, f"signed {now - sent:.0f} s away from now (window {window_s:g} s)"
        )
    return sent


# -- WeCom and DingTalk: WXBizMsgCrypt (platform-apis.md §1.2, §2.2) ------------------------
def wx_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1_hex of the four values sorted byte-wise and joined without separator."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode()).hexdigest()  # noqa: S324 - the vendor's algorithm


@dataclass(frozen=True)
class Sealed:
    """An encrypted, signed message as a receiver answers it (DingTalk's "success")."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str


class WXCrypt:
    """One receiver's WXBizMsgCrypt: verify, decrypt and (for replies) seal.

    `receive_id` is what must trail every plaintext: the corpid for WeCom, the owner key
    (appKey, corpId or suiteKey) for DingTalk.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            key = b""
        if len(encoding_aes_key) != 43 or len(key) != 32:
            raise ValueError("expected a 43-character EncodingAESKey that decodes to 32 bytes")
        self.token, self.receive_id = token, receive_id
        self._key = key

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Refused unless the ciphertext was signed with our token."""
        if not same(msg_signature, wx_signature(self.token, timestamp, nonce, encrypt)):
            raise forged("msg_signature does not match")

    def decrypt(self, encrypt: str) -> str:
        try:
            raw = base64.b64decode(encrypt)
        except (binascii.Error, ValueError):
            raise undecryptable("the ciphertext is not base64") from None
        if not raw or len(raw) % 16:
            raise undecryptable("the ciphertext is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= WX_BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise undecryptable("bad padding: not encrypted with this key")
        plain = padded[:-pad]
        if len(plain) < 20:
            raise undecryptable("the plaintext is too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, receiver = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length or not hmac.compare_digest(receiver, self.receive_id.encode()):
            raise undecryptable("the message is for another receiver")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise undecryptable("the plaintext is not UTF-8") from None

    def encrypt(self, message: str) -> str:
        body = message.encode("utf-8")
        plain = secrets.token_bytes(16) + struct.pack(">I", len(body)) + body
        plain += self.receive_id.encode("utf-8")
        pad = WX_BLOCK - len(plain) % WX_BLOCK
        encryptor = self._cipher().encryptor()
        ciphertext = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode()

    def seal(self, message: str, timestamp: str) -> Sealed:
        encrypt = self.encrypt(message)
        nonce = secrets.token_hex(8)
        signature = wx_signature(self.token, timestamp, nonce, encrypt)
        return Sealed(encrypt, signature, timestamp, nonce)


# -- Feishu (platform-apis.md §3.2) -----------------------------------------------------------
def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: sha256_hex(timestamp + nonce + encrypt_key + raw body)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def feishu_decrypt(encrypt_key: str, encrypt: str) -> str:
    """AES-256-CBC with key sha256(encrypt_key), the IV in the first 16 bytes, PKCS#7/16."""
    try:
        raw = base64.b64decode(encrypt)
    except (binascii.Error, ValueError):
        raise undecryptable("the ciphertext is not base64") from None
    if len(raw) < 32 or len(raw) % 16:
        raise undecryptable("the ciphertext is not an IV and whole AES blocks")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise undecryptable("bad padding: not encrypted with this key")
    try:
        return padded[:-pad].decode("utf-8")
    except UnicodeDecodeError:
        raise undecryptable("the plaintext is not UTF-8") from None


# -- the OA's change webhook (sandbox-documented E9 extension) ------------------------------
def oa_signature(secret: str, timestamp: str, body: bytes) -> str:
    """X-OA-Signature: hex(HMAC-SHA256(secret, timestamp + "." + raw body))."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# -- Agora Chat (platform-apis.md §6) -----------------------------------------------------------
def agora_security(call_id: str, secret: str, timestamp: str) -> str:
    """The callback's `security`: md5_hex(callId + secret + timestamp)."""
    text = call_id + secret + timestamp
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the vendor's algorithm


# -- Slack (platform-apis.md §4) ----------------------------------------------------------------
def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """X-Slack-Signature: "v0=" + hex(HMAC-SHA256(signing secret, "v0:" + ts + ":" + raw body))."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
