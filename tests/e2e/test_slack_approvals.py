"""End to end on Slack: an OA approval reaches its approver as a Block Kit card through the
OA's webhook and a real worker; the approver's press of Approve, signed with the v0 signing
secret, reaches the webhook service (`syncctl webhooks serve`, a real process), decides the
request in the OA as that person exactly once, updates the card with `chat.update`, and tells
the applicant, even when Slack delivers the press twice. The same press over Socket Mode
(`syncctl webhooks slack-socket`) does the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import ROOT, wait_for
from tests.e2e.spine import stop, webhook_service
from tests.events.approval_scene import entries, oa_actions

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPLICANT, APPROVER = "E00010", "E00011"
DEADLINE_S = 90


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=10, checkin_days=1) as client:
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def slack_env(migrated: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> dict[str, str]:
    """The shipped configuration with its Slack approvals flow turned on."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    flow = config / "flows" / "approvals_to_slack.yaml"
    flow.write_text(flow.read_text("utf-8").replace("enabled: false", "enabled: true"), "utf-8")
    return {**migrated, **sandbox.env(), "SYNC_CONFIG_DIR": str(config)}


@pytest.fixture
def worker(slack_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    from tests.e2e.spine import start_worker

    proc = start_worker(slack_env, tmp_path / "worker.log")
    yield proc
    stop(proc)


@pytest.fixture
def webhooks(slack_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    with webhook_service(slack_env, sandbox, tmp_path / "webhooks.log", ("oa", "slack")) as url:
        yield url


def new_approval(sandbox: SandboxClient) -> tuple[str, str]:
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    return str(made["requestId"]), title


def slack_card(sandbox: SandboxClient, title: str) -> Mapping[str, Any]:
    def found() -> Mapping[str, Any] | None:
        for entry in entries(sandbox, "slack", title):
            if entry["endpoint"] == "chat.postMessage" and entry["body"]["blocks"]:
                body: Mapping[str, Any] = entry["body"]
                return body
        return None

    card: Mapping[str, Any] = wait_for(found, DEADLINE_S, what=f"the Slack card of {title}")
    return card


def updates(sandbox: SandboxClient, card: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        e["body"]
        for e in sandbox.ledger("slack")
        if e["endpoint"] == "chat.update" and e["body"]["ts"] == card["ts"]
    ]


def applicant_told(sandbox: SandboxClient, title: str) -> list[Mapping[str, Any]]:
    return [
        e
        for e in entries(sandbox, "slack", title)
        if e["endpoint"] == "chat.postMessage" and "Your request" in e["body"]["text"]
    ]


def approve(sandbox: SandboxClient, card: Mapping[str, Any], via: str) -> dict[str, Any]:
    return dict(
        sandbox.press(
            "slack",
            {
                "kind": "block_actions",
                "channel": card["channel"],
                "ts": card["ts"],
                "action_id": "sync_approve",
                "user": APPROVER,
                "via": via,
            },
        )
    )


def decided_once(sandbox: SandboxClient, request_id: str, title: str, card) -> None:
    wait_for(lambda: updates(sandbox, card), DEADLINE_S, what="the Slack card updated")
    wait_for(lambda: applicant_told(sandbox, title), DEADLINE_S, what="the applicant told")
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    [update] = updates(sandbox, card)
    assert f"Approved by {WORLD.person(APPROVER).name}" in str(update["blocks"])
    assert "sync_approve" not in str(update["blocks"])  # no buttons once decided
    assert len(applicant_told(sandbox, title)) == 1


def test_a_signed_slack_press_approves_in_the_oa_once_updates_the_card_and_tells_the_applicant(
    sandbox, webhooks, worker
) -> None:
    request_id, title = new_approval(sandbox)
    card = slack_card(sandbox, title)
    assert card["channel"].startswith("D")  # the approver's DM with the app
    sandbox.fault("slack", "duplicate_webhook")  # Slack delivers the press twice

    pressed = approve(sandbox, card, "http")

    assert pressed["delivered"] == [200, 409]  # the copy is the same signed request: a replay
    decided_once(sandbox, request_id, title, card)


@pytest.fixture
def socket_receiver(slack_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """`syncctl webhooks slack-socket sandbox_slack`: the Socket Mode receiver, a real process."""
    log = tmp_path / "socket.log"
    out = open(log, "wb")  # noqa: SIM115 - closed below
    exe = Path(sys.executable).parent / "syncctl"
    proc = subprocess.Popen(
        [str(exe), "webhooks", "slack-socket", "sandbox_slack"],
        env=slack_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield log
    finally:
        stop(proc)
        out.close()


def test_a_slack_press_over_socket_mode_approves_in_the_oa_once_and_updates_the_card(
    sandbox, webhooks, worker, socket_receiver
) -> None:
    request_id, title = new_approval(sandbox)
    card = slack_card(sandbox, title)
    wait_for(
        lambda: "connected" in socket_receiver.read_text("utf-8", "replace"),
        DEADLINE_S,
        what="the Socket Mode receiver connected",
    )

    pressed = approve(sandbox, card, "socket")

    assert pressed["acked"] is True
    decided_once(sandbox, request_id, title, card)
