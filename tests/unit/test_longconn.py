"""The long connections' pure parts: Feishu's frame codec against the official SDK's protobuf
class, a failure's line without the socket URL's ticket, and how often a live connection is
written down (well inside the limit the silence alert allows)."""

from __future__ import annotations

import itertools

import pytest

from sync_pipeline.settings import load_settings
from sync_pipeline.webhooks.longconn import keeper as keeper_module
from sync_pipeline.webhooks.longconn import pbbp2
from sync_pipeline.webhooks.longconn.dingtalk import failure
from sync_pipeline.webhooks.longconn.keeper import Keeper

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


FRAME_EVERY_S = 0.5  # the sandbox's pings


def seen_writes(monkeypatch: pytest.MonkeyPatch, silence_s: float, for_s: float) -> list[float]:
    """When a Keeper writes down a live connection that brings a frame every FRAME_EVERY_S."""
    clock = [1000.0]
    monkeypatch.setattr(keeper_module.time, "monotonic", lambda: clock[0])
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    keeper = Keeper(load_settings(env), "sandbox_dingtalk", silence_s)
    writes: list[float] = []
    monkeypatch.setattr(keeper, "_write", lambda change: writes.append(clock[0]))
    while clock[0] < 1000.0 + for_s:
        keeper.heard()
        clock[0] += FRAME_EVERY_S
    return writes


@pytest.mark.parametrize("silence_s", [2.0, 3.0, 90.0])
def test_a_live_connection_is_written_down_well_inside_twice_its_silence_limit(
    monkeypatch: pytest.MonkeyPatch, silence_s: float
) -> None:
    writes = seen_writes(monkeypatch, silence_s, for_s=60)

    longest = max(b - a for a, b in itertools.pairwise(writes))
    # The silence alert calls a connection silent when nothing was written for 2 x silence_s;
    # a write at most every silence_s / 2 (or 5 s) plus a frame's gap stays well inside it.
    assert longest <= min(keeper_module.SEEN_EVERY_S, silence_s / 2) + FRAME_EVERY_S
    assert longest < 2 * silence_s - FRAME_EVERY_S
