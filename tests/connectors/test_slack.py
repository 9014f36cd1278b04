"""The Slack connector against the served Slack emulator: what the conformance suite does not
say of it. A post whose answer was lost is found by its metadata, not sent again; outside text
is escaped for mrkdwn; a decided card loses its buttons; the directory reads every member."""

from __future__ import annotations

from dataclasses import replace

import pytest
from starlette.applications import Starlette

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.slack import SlackConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.server import FaultCache, FaultInjector
from sync_pipeline.devtools.sandbox.slack import SlackEmulator, member_id
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.errors import OutcomeUnknown, RateLimited
from sync_pipeline.http import RetryPolicy
from sync_pipeline.processes import free_port
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteStatus
from tests.connectors.conftest import SEED, connector_config

APPROVER = member_id(SEED, "E00002")
POSTS = "chat.postMessage"


@pytest.fixture
def faults(store: SandboxStore) -> FaultCache:
    return FaultCache(store)


@pytest.fixture
def slack(serve_app, store: SandboxStore, faults: FaultCache) -> SlackEmulator:
    port = free_port()
    emulator = SlackEmulator(store, f"http://127.0.0.1:{port}")
    app = Starlette(routes=emulator.routes())
    serve_app(FaultInjector(app, emulator, faults), port)
    emulator.seed(World(SEED), approvals=0, checkin_days=0)
    return emulator


@pytest.fixture
def connector(slack: SlackEmulator, ctx: ConnectorContext) -> SlackConnector:
    creds = slack.credentials()
    config = connector_config(Vendor.SLACK, slack, {"bot_token": creds["bot_token"]})
    made = SlackConnector(replace(config, base_url=creds["api_url"]), ctx)
    made.client.retry_policy = RetryPolicy(max_attempts=1)
    return made


def card(key: str, text: str = "3 days", status: str = "pending") -> WriteRequest:
    content = {"title": "Leave #8812", "text": text, "status": status, "status_label": status}
    note = Notification.from_json({"kind": "card", "to": APPROVER, "content": content})
    return WriteRequest(key, "8812", WriteOp.CREATE, note)


def posts(store: SandboxStore) -> list[dict]:
    return [e.body for e in store.ledger("slack") if e.endpoint == POSTS]


def test_given_a_post_whose_answer_was_lost_the_look_up_finds_it_by_its_metadata(
    store: SandboxStore, faults: FaultCache, connector: SlackConnector
) -> None:
    connector.write("messages", card("k0"))  # the DM is open before the answers go missing
    store.set_fault("slack", "applied_no_answer", 1.0, 60, {"how": "drop"})
    faults.invalidate()
    request = card("k1" * 32)
    with pytest.raises(OutcomeUnknown):
        connector.write("messages", request)
    store.clear_faults("slack")
    faults.invalidate()

    found = connector.look_up("messages", request)

    [_, lost] = posts(store)
    assert found is not None
    assert found.status is WriteStatus.DONE
    assert found.target_id == f"{lost['channel']}:{lost['ts']}"
    assert len(posts(store)) == 2  # found, not sent again


def test_given_a_post_never_made_the_look_up_says_sending_is_safe(
    connector: SlackConnector,
) -> None:
    connector.write("messages", card("other"))

    assert connector.look_up("messages", card("never-sent")) is None


def test_outside_text_is_escaped_for_mrkdwn_so_it_mentions_and_links_nothing(
    store: SandboxStore, connector: SlackConnector
) -> None:
    connector.write("messages", card("k2", text="<!channel> & <https://evil.example|click>"))

    [post] = posts(store)
    section = next(b for b in post["blocks"] if b["type"] == "section")
    assert section["text"]["text"] == "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"


def test_a_decided_card_is_updated_in_place_without_its_buttons(
    store: SandboxStore, connector: SlackConnector
) -> None:
    sent = connector.write("messages", card("k3"))
    content = {"title": "Leave #8812", "status": "approved", "status_label": "Approved by Li"}
    note = Notification.from_json({"kind": "update_card", "to": APPROVER, "content": content})

    updated = connector.write(
        "messages", WriteRequest("k4", "8812", WriteOp.UPDATE, note, sent.target_id)
    )

    assert updated.status is WriteStatus.DONE
    [update] = [e.body for e in store.ledger("slack") if e.endpoint == "chat.update"]
    assert "sync_approve" not in str(update["blocks"])
    assert "Approved by Li" in str(update["blocks"])


def test_the_directory_lists_every_member_with_the_worlds_email(
    connector: SlackConnector,
) -> None:
    users = connector.list_users()

    emails = {p.email for p in World(SEED).people}
    assert len(users) == len(emails)
    assert {u.email for u in users} == emails


def test_past_a_tier_limit_the_call_fails_rate_limited_with_slacks_retry_after(
    store: SandboxStore, connector: SlackConnector
) -> None:
    store.set_setting("slack", "rate_limit_scale", "0.05")  # users.list: 1 call a minute
    connector.list_users()

    with pytest.raises(RateLimited) as caught:
        connector.list_users()

    assert caught.value.retry_after == 60.0
