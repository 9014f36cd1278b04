"""The long connections' pure parts: Feishu's frame codec against the official SDK's protobuf
class, and a failure's line without the socket URL's ticket."""

from __future__ import annotations

import pytest

from sync_pipeline.webhooks.longconn import pbbp2
from sync_pipeline.webhooks.longconn.dingtalk import failure

FRAME = pbbp2.Frame(
    seq_id=3,
    log_id=1_700_000_000_000,
    service=7,
    method=pbbp2.DATA,
    headers=(("type", "event"), ("message_id", "m-1"), ("sum", "1"), ("seq", "0")),
    payload='{"schema":"2.0","事件":1}'.encode(),
)


def test_a_frame_we_encode_is_the_one_lark_oapi_decodes() -> None:
    sdk = pytest.importorskip("lark_oapi.ws.pb.pbbp2_pb2")
    parsed = sdk.Frame()

    parsed.ParseFromString(pbbp2.encode(FRAME))

    assert (parsed.SeqID, parsed.LogID, parsed.service, parsed.method) == (3, FRAME.log_id, 7, 1)
    assert [(h.key, h.value) for h in parsed.headers] == list(FRAME.headers)
    assert parsed.payload == FRAME.payload


def test_a_frame_lark_oapi_encodes_is_the_one_we_decode() -> None:
    sdk = pytest.importorskip("lark_oapi.ws.pb.pbbp2_pb2")
    frame = sdk.Frame(SeqID=3, LogID=FRAME.log_id, service=7, method=1, payload=FRAME.payload)
    for key, value in FRAME.headers:
        header = frame.headers.add()
        header.key, header.value = key, value

    assert pbbp2.decode(frame.SerializeToString()) == FRAME


@pytest.mark.parametrize("junk", [b"\x08", b"\x0a\x05ab", b"\x0b"])
def test_bytes_that_are_not_a_frame_are_refused(junk: bytes) -> None:
    with pytest.raises(ValueError, match=r"truncated|wire type"):
        pbbp2.decode(junk)


def test_a_failure_line_leaves_out_the_socket_urls_query() -> None:
    line = failure(OSError("cannot reach ws://gw.example/connect?ticket=s3cret-ticket"))

    assert "s3cret" not in line
    assert line == "OSError: cannot reach ws://gw.example/connect?..."
