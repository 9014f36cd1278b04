"""WXBizMsgCrypt: the callback crypto that WeCom and DingTalk share (platform-apis.md §1.2, §2.2).

The emulators use it to sign and encrypt the callbacks they send, and to check the encrypted
answers that DingTalk expects back. It is written from the vendors' published description and
checked against their published test vectors (tests/sandbox/test_wxcrypto.py), never against
our own connector code.

    key        = b64decode(EncodingAESKey + "=")        32 bytes, AES-256-CBC, iv = key[:16]
    plaintext  = rand16 || uint32_be(len(msg)) || msg || receiveid
    padding    = PKCS#7 with a block of 32 (not AES's 16: the vendors' own choice)
    signature  = sha1_hex("".join(sorted([token, timestamp, nonce, encrypt])))

`receiveid` is the WeCom corpid (or suite id), or for DingTalk the app key, corp id or suite key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # PKCS#7 block of WXBizMsgCrypt: 32 bytes, although AES itself works on 16
AES_KEY_CHARS = 43
_ALPHABET = string.ascii_letters + string.digits


class CryptoError(ValueError):
    """A callback that cannot be trusted: bad signature, key, padding or receiver."""


class SignatureMismatch(CryptoError):
    pass


class ReceiveIdMismatch(CryptoError):
    pass


def new_aes_key() -> str:
    """A fresh 43-character EncodingAESKey, as the vendors' consoles generate."""
    while True:
        key = "".join(secrets.choice(_ALPHABET) for _ in range(AES_KEY_CHARS))
        try:
            if len(base64.b64decode(key + "=", validate=True)) == 32:
                return key
        except binascii.Error:
            continue


def random_text(size: int) -> str:
    """Letters and digits: nonces and the 16 random bytes the scheme puts first."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 over the byte-wise sorted parts, joined without separator, as lowercase hex."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - the vendors' scheme


@dataclass(frozen=True)
class Sealed:
    """One encrypted message with what travels beside it (query string or reply fields)."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str


class WXBizMsgCrypt:
    """Encrypt, decrypt and sign callback messages for one (token, AES key, receiver) triple."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != AES_KEY_CHARS:
            raise CryptoError(f"EncodingAESKey must be {AES_KEY_CHARS} characters")
        try:
            self.key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error as exc:
            raise CryptoError("EncodingAESKey is not base64") from exc
        if len(self.key) != 32:
            raise CryptoError("EncodingAESKey must decode to 32 bytes")
        self.token = token
        self.receive_id = receive_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, msg: str | bytes, rand16: bytes | None = None) -> str:
        """Base64 ciphertext of `msg`; `rand16` fixed only to reproduce published vectors."""
        body = msg.encode("utf-8") if isinstance(msg, str) else msg
        prefix = rand16 if rand16 is not None else random_text(16).encode("ascii")
        plain = prefix + struct.pack(">I", len(body)) + body + self.receive_id.encode("utf-8")
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypt: str) -> str:
        """Plaintext of a base64 ciphertext; the trailing receiver must be ours."""
        try:
            # DingTalk's Python sample emits base64 with line breaks; b64decode skips them.
            raw = base64.b64decode("".join(encrypt.split()))
        except binascii.Error as exc:
            raise CryptoError("ciphertext is not base64") from exc
        if not raw or len(raw) % 16:
            raise CryptoError("ciphertext is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK:
            raise CryptoError("bad PKCS#7 padding")
        plain = plain[:-pad]
        if len(plain) < 20:  # 16 random bytes and a 4-byte length
            raise CryptoError("plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        msg, receiver = plain[20 : 20 + length], plain[20 + length :]
        if len(msg) != length:
            raise CryptoError("message length does not match its prefix")
        if receiver.decode("utf-8", "replace") != self.receive_id:
            raise ReceiveIdMismatch("message was encrypted for another receiver")
        return msg.decode("utf-8")

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return signature(self.token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """Check the signature first (it covers the ciphertext), then decrypt."""
        if not secrets.compare_digest(self.sign(timestamp, nonce, encrypt), msg_signature):
            raise SignatureMismatch("msg_signature does not match")
        return self.decrypt(encrypt)

    def seal(self, msg: str, timestamp: str | None = None, nonce: str | None = None) -> Sealed:
        """Encrypt and sign in one go, with a fresh nonce and the current time by default."""
        ts = timestamp if timestamp is not None else str(int(time.time()))
        once = nonce if nonce is not None else random_text(10)
        encrypt = self.encrypt(msg)
        return Sealed(encrypt, self.sign(ts, once, encrypt), ts, once)
