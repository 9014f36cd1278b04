"""Slack interactivity from the sandbox's emulator into the webhook service: a press of a
card's button, signed with the v0 signing secret, is recorded once as a card_action naming the
message pressed; a forged, stale or replayed one is refused with a 4xx and counted."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.slack import member_id
from sync_pipeline.records import EventKind
from tests.webhooks.conftest import Captured, Service, capture, post, send_card

SEED = 7  # the webhooks sandbox's world
APPROVER = "E00002"


@pytest.fixture
def slack_url(service: Service) -> str:
    return service.endpoint("slack")  # the service fixture points the emulator at it


@pytest.fixture
def card(connectors) -> tuple[str, str]:
    """(channel, ts) of an approval card sent to the approver by our Slack connector."""
    sent = send_card(connectors["slack"], member_id(SEED, APPROVER), "8812")
    channel, _, ts = str(sent.target_id).partition(":")
    return channel, ts


def press(sandbox, card: tuple[str, str], **more: Any) -> dict[str, Any]:
    channel, ts = card
    action = {"kind": "block_actions", "channel": channel, "ts": ts, "user": APPROVER}
    return dict(sandbox.press("slack", {**action, "action_id": "sync_approve", **more}))


def test_a_signed_press_is_recorded_once_as_a_card_action_naming_the_message(
    sandbox, service: Service, slack_url: str, card: tuple[str, str]
) -> None:
    sent = press(sandbox, card)

    [row] = service.wait_rows("slack", 1)
    assert sent["delivered"] == [200]
    assert row.event.kind is EventKind.CARD_ACTION
    assert row.event.event_id == sent["trigger_id"]
    data = row.event.data
    assert (data["action"], data["source_id"]) == ("approve", "8812")
    assert data["user_id"] == member_id(SEED, APPROVER)
    assert data["card"] == {"message": f"{card[0]}:{card[1]}"}


@pytest.mark.parametrize(
    ("bad", "reason"), [({"forge": True}, "bad_signature"), ({"stale_s": 301}, "stale")]
)
def test_a_forged_or_stale_press_is_refused_4xx_and_counted(
    sandbox, service: Service, slack_url: str, card: tuple[str, str], bad, reason: str
) -> None:
    sent = press(sandbox, card, **bad)

    assert sent["delivered"] == [401]
    assert service.refusals("slack") == {reason: 1}
    assert service.rows("slack") == []


def test_the_same_signed_press_sent_again_is_refused_as_a_replay(
    sandbox, service: Service, slack_url: str, recorder, card: tuple[str, str]
) -> None:
    captured: Captured = capture(sandbox, service, recorder, "slack", lambda: press(sandbox, card))

    first = captured.send(slack_url)
    again = captured.send(slack_url)

    assert (first.status_code, again.status_code) == (200, 409)
    assert service.refusals("slack") == {"replay": 1}
    assert len(service.rows("slack")) == 1


def test_a_press_with_a_body_changed_under_its_signature_is_refused(
    sandbox, service: Service, slack_url: str, recorder, card: tuple[str, str]
) -> None:
    captured: Captured = capture(sandbox, service, recorder, "slack", lambda: press(sandbox, card))

    tampered = captured.send(slack_url, body=captured.body.replace(b"approve", b"reject"))

    assert tampered.status_code == 401
    assert service.refusals("slack") == {"bad_signature": 1}


def test_the_events_apis_url_verification_is_answered_with_its_challenge(
    service: Service, slack_url: str
) -> None:
    body = b'{"token":"t","challenge":"c-123","type":"url_verification"}'
    stamp = str(int(time.time()))
    secret = service.env["SANDBOX_SLACK_SIGNING_SECRET"].encode()
    digest = hmac.new(secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }

    answer = post(slack_url, body, headers=headers)

    assert answer.json() == {"challenge": "c-123"}
