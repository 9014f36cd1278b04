"""Contract tests of the Slack emulator: real HTTP and WebSocket against a served emulator,
with Slack's own `slack-sdk` as the client (WebClient, SignatureVerifier, SocketModeClient),
so the emulator is judged by an implementation we did not write."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.slack import SlackEmulator, member_id
from sync_pipeline.devtools.sandbox.world import World

SEED = 11
BUTTONS = [
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "sync_approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": '{"action":"approve","source_id":"8812"}',
                "style": "primary",
            }
        ],
    }
]


@pytest.fixture
def slack(serve, store: SandboxStore) -> SlackEmulator:
    emulator = serve(SlackEmulator, store)
    emulator.seed(World(seed=SEED), approvals=0, checkin_days=0)
    assert isinstance(emulator, SlackEmulator)
    return emulator


@pytest.fixture
def client(slack: SlackEmulator) -> WebClient:
    creds = slack.credentials()
    return WebClient(token=creds["bot_token"], base_url=creds["api_url"])


def first_member() -> str:
    return member_id(SEED, "E00001")


class Receiver:
    """A loopback HTTP server keeping every request it gets (an app's Request URL)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/slack"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def card(client: WebClient) -> tuple[str, str]:
    sent = client.chat_postMessage(channel=first_member(), text="Leave", blocks=BUTTONS)
    return str(sent["channel"]), str(sent["ts"])


# -- Web API ---------------------------------------------------------------------------------
def test_auth_test_names_the_bot_and_its_workspace(slack: SlackEmulator, client) -> None:
    answer = client.auth_test()

    assert answer["user_id"] == slack.credentials()["bot_user_id"]
    assert answer["team_id"] == slack.credentials()["team_id"]


def test_given_a_wrong_token_the_call_fails_ok_false_invalid_auth(slack: SlackEmulator) -> None:
    wrong = WebClient(token="xoxb-1-nope", base_url=slack.credentials()["api_url"])

    with pytest.raises(SlackApiError) as caught:
        wrong.auth_test()

    assert caught.value.response.status_code == 200
    assert caught.value.response.data == {"ok": False, "error": "invalid_auth"}


def test_post_message_with_buttons_to_a_member_lands_in_their_dm_and_the_ledger(
    slack: SlackEmulator, client: WebClient
) -> None:
    opened = client.conversations_open(users=first_member())

    channel, ts = card(client)

    assert channel == opened["channel"]["id"]
    [entry] = [e for e in slack.store.ledger("slack") if e.endpoint == "chat.postMessage"]
    assert entry.body["ts"] == ts
    assert entry.body["blocks"] == BUTTONS


def test_given_an_unknown_channel_a_post_fails_channel_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C0NOTHERE", text="hi")

    assert caught.value.response["error"] == "channel_not_found"


def test_given_more_than_fifty_blocks_a_post_fails_invalid_blocks(client: WebClient) -> None:
    blocks = [{"type": "divider"}] * 51

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=first_member(), text="x", blocks=blocks)

    assert caught.value.response["error"] == "invalid_blocks"


def test_chat_update_replaces_the_blocks_of_the_bots_message(
    slack: SlackEmulator, client: WebClient
) -> None:
    channel, ts = card(client)

    client.chat_update(channel=channel, ts=ts, text="Approved", blocks=[])

    [message] = client.conversations_history(channel=channel)["messages"]
    assert (message["text"], message["blocks"]) == ("Approved", [])


def test_history_shows_message_metadata_only_when_asked(client: WebClient) -> None:
    metadata = {"event_type": "sync_pipeline_effect", "event_payload": {"effect_key": "k1"}}
    sent = client.chat_postMessage(channel=first_member(), text="hi", metadata=metadata)

    plain = client.conversations_history(channel=sent["channel"])["messages"][0]
    full = client.conversations_history(channel=sent["channel"], include_all_metadata=True)

    assert "metadata" not in plain
    assert full["messages"][0]["metadata"] == metadata


def test_users_list_pages_every_member_once_by_cursor(client: WebClient) -> None:
    # The SDK follows response_metadata.next_cursor, reusing one response object.
    pages = [dict(page.data) for page in client.users_list(limit=7)]

    ids = [m["id"] for page in pages for m in page["members"]]
    assert len(pages) == 9  # 60 members, 7 a page
    assert len(ids) == len(set(ids)) == 60
    assert pages[-1]["response_metadata"]["next_cursor"] == ""


def test_lookup_by_email_finds_the_member_with_the_worlds_email(client: WebClient) -> None:
    person = World(seed=SEED).people[0]

    found = client.users_lookupByEmail(email=person.email)

    assert found["user"]["id"] == member_id(SEED, person.employee_no)
    with pytest.raises(SlackApiError) as caught:
        client.users_lookupByEmail(email="nobody@example.invalid")
    assert caught.value.response["error"] == "users_not_found"


def test_past_the_tier_limit_the_answer_is_429_ratelimited_with_retry_after(
    slack: SlackEmulator, store: SandboxStore, client: WebClient
) -> None:
    store.set_setting("slack", "rate_limit_scale", "0.1")  # tier 2: 2 calls a minute

    client.users_list(limit=5)
    client.users_list(limit=5)
    with pytest.raises(SlackApiError) as caught:
        client.users_list(limit=5)

    answer = caught.value.response
    assert answer.status_code == 429
    assert answer.data == {"ok": False, "error": "ratelimited"}
    retry_after = answer.headers["Retry-After"]
    assert int(retry_after[0] if isinstance(retry_after, list) else retry_after) == 60


# -- interactivity ---------------------------------------------------------------------------
def press(slack: SlackEmulator, channel: str, ts: str, **more: Any) -> dict[str, Any]:
    action = {"kind": "block_actions", "channel": channel, "ts": ts}
    return slack.press({**action, "action_id": "sync_approve", "user": "E00002", **more})


def test_a_press_is_posted_form_encoded_and_the_sdks_verifier_accepts_its_signature(
    slack: SlackEmulator, store: SandboxStore, client: WebClient, receiver: Receiver
) -> None:
    store.set_setting("slack", "interactivity_url", receiver.url)
    channel, ts = card(client)

    press(slack, channel, ts)

    [(headers, body)] = receiver.requests
    verifier = SignatureVerifier(slack.credentials()["signing_secret"])
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert body.startswith(b"payload=")
    assert verifier.is_valid(
        body, headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    )


@pytest.mark.parametrize("bad", [{"forge": True}, {"stale_s": 301}], ids=["forged", "stale"])
def test_a_forged_or_stale_press_fails_the_sdks_verifier(
    slack: SlackEmulator, store: SandboxStore, client: WebClient, receiver: Receiver, bad
) -> None:
    store.set_setting("slack", "interactivity_url", receiver.url)
    channel, ts = card(client)

    press(slack, channel, ts, **bad)

    [(headers, body)] = receiver.requests
    verifier = SignatureVerifier(slack.credentials()["signing_secret"])
    assert not verifier.is_valid(
        body, headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    )


# -- Socket Mode -----------------------------------------------------------------------------
@pytest.fixture
def socket_client(slack: SlackEmulator) -> Iterator[tuple[SocketModeClient, list[dict[str, Any]]]]:
    creds = slack.credentials()
    got: list[dict[str, Any]] = []
    web = WebClient(token=creds["bot_token"], base_url=creds["api_url"])
    sdk = SocketModeClient(
        app_token=creds["app_token"], web_client=web, auto_reconnect_enabled=False
    )

    def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        got.append(request.payload)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    sdk.socket_mode_request_listeners.append(on_request)
    sdk.connect()
    deadline = time.monotonic() + 10
    while not slack._connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield sdk, got
    sdk.close()


def test_the_sdks_socket_mode_client_gets_a_press_and_its_ack_is_taken(
    slack: SlackEmulator, client: WebClient, socket_client
) -> None:
    _, got = socket_client
    channel, ts = card(client)

    result = press(slack, channel, ts)

    assert result["acked"] is True
    assert result["sent"] == 1
    [payload] = got
    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "sync_approve"


def test_a_connection_url_works_once(slack: SlackEmulator) -> None:
    import websocket  # websocket-client, as slack-sdk's own tests use

    creds = slack.credentials()
    web = WebClient(token=creds["app_token"], base_url=creds["api_url"])
    url = web.apps_connections_open(app_token=creds["app_token"])["url"]
    first = websocket.create_connection(url, timeout=5)
    hello = first.recv()

    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url, timeout=5)

    assert '"type": "hello"' in hello
    first.close()


def test_an_envelope_not_acked_within_3_s_is_sent_again_marked_as_a_retry(
    slack: SlackEmulator, client: WebClient
) -> None:
    import json

    import websocket

    creds = slack.credentials()
    web = WebClient(token=creds["app_token"], base_url=creds["api_url"])
    url = web.apps_connections_open(app_token=creds["app_token"])["url"]
    socket = websocket.create_connection(url, timeout=10)
    socket.recv()  # hello
    channel, ts = card(client)
    result: dict[str, Any] = {}
    pressing = threading.Thread(target=lambda: result.update(press(slack, channel, ts)))
    pressing.start()

    first = json.loads(socket.recv())  # not acked
    second = json.loads(socket.recv())
    socket.send(json.dumps({"envelope_id": second["envelope_id"]}))
    pressing.join(timeout=10)

    assert first["envelope_id"] == second["envelope_id"]
    assert "retry_attempt" not in first
    assert (second["retry_attempt"], second["retry_reason"]) == (1, "timeout")
    assert (result["acked"], result["sent"]) == (True, 2)
    socket.close()
