"""The connector conformance promises (tests/connectors/test_conformance.py), kept by the
Matrix connector against a real Synapse rather than an emulator: what `STREAMS` declares works
and what it does not is refused; the homeserver's documented answers become the right error
class with their code and wait; its throttle is RateLimited with its wait; the same write twice
is one message (the txnId is the effect key) inside the window `dedupe_window_s` states; a
refused token is a rejection, never retried as if a refresh could help. (A 5xx and a garbled
body cannot be provoked on a real server: their classification is in the answers table.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors import matrix
from sync_pipeline.connectors.matrix import parse_target
from sync_pipeline.connectors.registry import capabilities
from sync_pipeline.errors import (
    ConfigError,
    RateLimited,
    SyncError,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import RetryPolicy
from sync_pipeline.records import EventKind, ReadWindow, WriteStatus
from tests.matrix.conftest import MakeConnector
from tests.matrix.synapse import MatrixUser, Synapse
from tests.matrix.test_connector import card, person, sent, write_cards

pytestmark = pytest.mark.slow

DAY = ReadWindow("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
LIMITED = {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500}


@dataclass(frozen=True)
class Answer:
    """A homeserver's answer, what it is classified as, with which code and wait."""

    status: int
    body: Mapping[str, Any]
    error: type[SyncError] | None
    code: str = ""
    wait: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ANSWERS = (
    Answer(200, {"event_id": "$abc"}, None),
    Answer(429, LIMITED, RateLimited, "M_LIMIT_EXCEEDED", 1.5),
    Answer(429, LIMITED, RateLimited, "M_LIMIT_EXCEEDED", 2.0, {"Retry-After": "2"}),
    Answer(
        401, {"errcode": "M_UNKNOWN_TOKEN", "soft_logout": False}, VendorRejected, "M_UNKNOWN_TOKEN"
    ),
    Answer(401, {"errcode": "M_MISSING_TOKEN"}, VendorRejected, "M_MISSING_TOKEN"),
    Answer(403, {"errcode": "M_FORBIDDEN"}, VendorRejected, "M_FORBIDDEN"),
    Answer(404, {"errcode": "M_NOT_FOUND"}, VendorRejected, "M_NOT_FOUND"),
    Answer(400, {"errcode": "M_BAD_JSON"}, VendorRejected, "M_BAD_JSON"),
    Answer(502, {}, VendorUnavailable, "http_502"),
)


def test_the_declared_streams_are_messages_written_and_nothing_else() -> None:
    streams = capabilities(Vendor.MATRIX)

    assert set(streams) == {"messages"}
    assert streams["messages"].write
    assert not streams["messages"].read
    assert streams["messages"].events == frozenset[EventKind]()


def test_a_pull_of_the_stream_not_declared_readable_is_refused(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    connector = make_connector(person(synapse, "bot"))

    with pytest.raises(ConfigError):
        connector.read_page(
            "messages", ReadWindow("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"), None, 10
        )


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.status}-{a.code or 'ok'}")
def test_a_homeserver_answer_is_classified_with_its_code_and_wait(answer: Answer) -> None:
    found = matrix.classify(answer.status, answer.body, answer.headers)

    if answer.error is None:
        assert found is None
        return
    assert isinstance(found, answer.error)
    assert found.vendor == "matrix"
    assert found.code == answer.code
    assert found.retry_after == answer.wait


def test_the_same_write_twice_is_one_message_inside_the_stated_window(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    request = card(approver.user_id, key="d" * 64)

    first = make_connector(bot).write("messages", request)
    again = make_connector(bot).write("messages", request)  # another worker, after a lost answer

    assert first.status is again.status is WriteStatus.DONE
    assert again.target_id == first.target_id
    room_id, _ = parse_target(first.target_id or "") or ("", "")
    assert len(sent(synapse, bot, room_id)) == 1
    assert make_connector(bot).dedupe_window_s("messages") == 1800.0


def test_given_the_homeserver_throttles_the_send_fails_rate_limited_with_its_wait(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    bot, approver = person(synapse, "bot"), person(synapse)
    connector = make_connector(bot)
    room_id = connector.room_for(approver.user_id)
    synapse.limit(bot, per_second=1, burst=1)
    connector.client.retry_policy = RetryPolicy(max_attempts=1)

    with pytest.raises(RateLimited) as raised:
        write_cards(connector, approver, 5)

    assert raised.value.code == "M_LIMIT_EXCEEDED"
    assert raised.value.retry_after is not None
    assert 0 < raised.value.retry_after <= 2
    assert raised.value.retryable is True
    assert len(sent(synapse, bot, room_id)) < 5


def test_given_a_token_the_homeserver_refuses_the_write_is_rejected_not_retried(
    synapse: Synapse, make_connector: MakeConnector
) -> None:
    approver = person(synapse)
    stranger = MatrixUser("@nobody:sync.test", "not-a-token", "")
    connector = make_connector(stranger)

    result = connector.write("messages", card(approver.user_id))

    assert result.status is WriteStatus.REJECTED
    assert "M_UNKNOWN_TOKEN" in result.reason
    assert connector.client.call_counts()["whoami"] == 1
