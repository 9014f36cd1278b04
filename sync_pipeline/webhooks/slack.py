"""Slack interactivity (Block Kit button presses) and the Events API's URL check.

Contract (platform-apis.md §4, docs.slack.dev "Verifying requests from Slack"): every request
carries `X-Slack-Request-Timestamp` (Unix seconds) and `X-Slack-Signature = "v0=" +
hex(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body))`; a timestamp more than
the window (five minutes) away is refused, the signature is compared in constant time over
the raw bytes, before anything is parsed. Interactivity is form-encoded with one field,
`payload` (JSON); a `block_actions` press of one of our decision buttons (buttons/slack.py)
becomes a card_action whose event id is the interaction's `trigger_id`, and whose card
handle is "<channel>:<ts>" of the message pressed, the target id our connector gave it. It is
acked with an empty HTTP 200 within 3 s; the card is updated later by the worker
(`chat.update`). The Events API's `url_verification` is answered with its `challenge`; its
other events are acknowledged and dropped (nothing here handles them yet). The same payloads
arrive over Socket Mode (sync_pipeline/socket_mode/slack.py), decoded by `decode` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from sync_pipeline.connectors.buttons import slack as slack_buttons
from sync_pipeline.connectors.slack import message_target
from sync_pipeline.records import InboundEvent
from sync_pipeline.webhooks.delivery import (
    FOREIGN_BUTTON,
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    card_action,
    json_object,
    required,
    unhandled,
)
from sync_pipeline.webhooks.verify import check_window, forged, malformed, same, slack_signature

OK = Answer()  # an empty 200: Slack reads nothing more from an interactivity ack


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    timestamp = incoming.headers.get("x-slack-request-timestamp", "")
    signature = incoming.headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise forged("X-Slack-Request-Timestamp or X-Slack-Signature is missing")
    if not timestamp.isdigit():
        raise malformed("X-Slack-Request-Timestamp is not Unix seconds")
    expected = slack_signature(endpoint.secret("signing_secret"), timestamp, incoming.body)
    if not same(signature, expected):
        raise forged("X-Slack-Signature does not match")
    sent = check_window(timestamp, incoming.now, endpoint.window)
    valid_until = sent + endpoint.window
    if "application/json" in incoming.headers.get("content-type", ""):
        body = json_object(incoming.body)
        if body.get("type") == "url_verification":
            return Accepted(Answer.json({"challenge": str(body.get("challenge", ""))}))
        return Accepted(OK, None, replay_key=signature, valid_until=valid_until)
    try:
        form = parse_qs(incoming.body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise malformed("the form body is not UTF-8") from None
    if form.get("ssl_check"):
        return Accepted(OK)
    payloads = form.get("payload") or []
    if len(payloads) != 1:
        raise malformed("expected one form field `payload`")
    event = decode(endpoint.connector, json_object(payloads[0]))
    return Accepted(OK, event, replay_key=signature, valid_until=valid_until)


def decode(connector: str, payload: Mapping[str, Any]) -> InboundEvent | None:
    """A `block_actions` payload -> card_action (a press of a button not ours -> unhandled);
    any other interaction (shortcuts, view submissions) is not ours to handle."""
    if payload.get("type") != "block_actions":
        return None
    (trigger_id,) = required(payload, "trigger_id")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], Mapping):
        raise malformed("block_actions has no actions")
    action = actions[0]
    (action_ts,) = required(action, "action_ts")
    value = slack_buttons.parse(action)
    if value is None:
        return unhandled(connector, "slack", trigger_id, action_ts, reason=FOREIGN_BUTTON)
    user = _mapping(payload.get("user"))
    container = _mapping(payload.get("container"))
    channel = str(container.get("channel_id") or _mapping(payload.get("channel")).get("id") or "")
    ts = str(container.get("message_ts") or _mapping(payload.get("message")).get("ts") or "")
    (user_id,) = required(user, "id")
    return card_action(
        connector,
        "slack",
        trigger_id,
        action_ts,
        user_id=user_id,
        value=value,
        comment="",
        card={"message": message_target(channel, ts)} if channel and ts else {},
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
