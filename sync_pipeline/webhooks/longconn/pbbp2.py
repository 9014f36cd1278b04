"""Feishu's long-connection frame: the protobuf message `pbbp2.Frame` (lark-oapi's
ws/pb/pbbp2.proto), encoded by hand: it is nine fields, and the official SDK vendors its own
protobuf runtime rather than depend on one.

    Frame  { uint64 SeqID = 1; uint64 LogID = 2; int32 service = 3; int32 method = 4;
             repeated Header headers = 5; string payload_encoding = 6; string payload_type = 7;
             bytes payload = 8; string LogIDNew = 9; }
    Header { string key = 1; string value = 2; }

`method` 0 is a CONTROL frame (headers `type` ping or pong), 1 a DATA frame (headers `type`
event or card, `message_id`, `sum`, `seq`, `trace_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

CONTROL, DATA = 0, 1
_VARINT, _LENGTH = 0, 2


@dataclass(frozen=True)
class Frame:
    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = CONTROL
    headers: tuple[tuple[str, str], ...] = ()
    payload_encoding: str = ""
    payload_type: str = ""
    payload: bytes = b""
    log_id_new: str = ""
    unknown: bytes = field(default=b"", repr=False)

    def header(self, key: str) -> str:
        return next((v for k, v in self.headers if k == key), "")

    def answered(self, payload: bytes, **more: str) -> Frame:
        """This frame sent back with another payload and more headers (how a client answers
        a DATA frame)."""
        return replace(self, headers=self.headers + tuple(more.items()), payload=payload)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes(number: int, value: bytes) -> bytes:
    return _key(number, _LENGTH) + _varint(len(value)) + value


def encode(frame: Frame) -> bytes:
    out = bytearray()
    for number, integer in ((1, frame.seq_id), (2, frame.log_id), (3, frame.service)):
        out += _key(number, _VARINT) + _varint(integer)
    out += _key(4, _VARINT) + _varint(frame.method)
    for key, text in frame.headers:
        out += _bytes(5, _bytes(1, key.encode()) + _bytes(2, text.encode()))
    for number, string in ((6, frame.payload_encoding), (7, frame.payload_type)):
        if string:
            out += _bytes(number, string.encode())
    if frame.payload:
        out += _bytes(8, frame.payload)
    if frame.log_id_new:
        out += _bytes(9, frame.log_id_new.encode())
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("a truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    found: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, at = _read_varint(data, at)
            found.append((number, value))
        elif wire == _LENGTH:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise ValueError("a truncated field")
            found.append((number, data[at : at + size]))
            at += size
        else:
            raise ValueError(f"wire type {wire} is not pbbp2's")
    return found


def decode(data: bytes) -> Frame:
    """A Frame; ValueError when the bytes are not one."""
    values: dict[str, object] = {}
    headers: list[tuple[str, str]] = []
    names = {1: "seq_id", 2: "log_id", 3: "service", 4: "method"}
    texts = {6: "payload_encoding", 7: "payload_type", 9: "log_id_new"}
    for number, value in _fields(data):
        if number in names and isinstance(value, int):
            values[names[number]] = value
        elif number == 5 and isinstance(value, bytes):
            pair = dict(_fields(value))
            key, text = pair.get(1, b""), pair.get(2, b"")
            if not isinstance(key, bytes) or not isinstance(text, bytes):
                raise ValueError("a header is not two strings")
            headers.append((key.decode(), text.decode()))
        elif number in texts and isinstance(value, bytes):
            values[texts[number]] = value.decode()
        elif number == 8 and isinstance(value, bytes):
            values["payload"] = value
    return Frame(headers=tuple(headers), **values)  # type: ignore[arg-type]
