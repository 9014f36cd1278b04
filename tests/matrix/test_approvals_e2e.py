"""End to end on a real Synapse: the approvals flow OA -> Matrix with a real worker and a real
Beat. An OA approval reaches its approver as one card in their direct room with the bot; the
approver's ✅ reaction (or a reply "reject") is read back by Beat's /sync tick and decides the
request in the OA exactly once, as that approver; a reaction from anyone else decides nothing.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_pipeline.connectors.buttons.matrix import SOURCE_ID_KEY
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import inbound_events
from tests.conftest import ROOT, wait_for
from tests.e2e.spine import start_worker, stop
from tests.events.approval_scene import oa_actions
from tests.matrix.synapse import MatrixUser, Synapse

pytestmark = pytest.mark.slow

APPLICANT, APPROVER, OTHER = "E00010", "E00011", "E00012"
DEADLINE_S = 90
FLOW = "approvals_to_matrix"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=7, approvals=0, checkin_days=0) as client:
        yield client


@pytest.fixture(scope="module")
def people(synapse: Synapse) -> dict[str, MatrixUser]:
    """The bot and the three people, each Matrix user named by their employee number."""
    found = {"bot": synapse.register("syncbot")}
    for employee_no in (APPLICANT, APPROVER, OTHER):
        found[employee_no] = synapse.register(employee_no.lower())
    return found


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    return private_redis_url


@pytest.fixture
def matrix_env(
    migrated: dict[str, str],
    sandbox: SandboxClient,
    synapse: Synapse,
    people: dict[str, MatrixUser],
    tmp_path: Path,
) -> dict[str, str]:
    """The OA of the sandbox and the Matrix example, as a deployment would write them: the
    shipped OA connector, config/examples/matrix's connector and flow (enabled)."""
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    shipped = yaml.safe_load((ROOT / "config" / "connectors.yaml").read_text())
    example = yaml.safe_load((ROOT / "config/examples/matrix/connectors.yaml").read_text())
    example["matrix"].update(
        base_url=synapse.base_url,
        options={
            "users": [people[e].user_id for e in (APPLICANT, APPROVER, OTHER)],
            "employee_no_from_localpart": "upper",
        },
        rate_limits={"default": [[50, 1]]},
    )
    connectors = {"sandbox_oa": shipped["sandbox_oa"], **example}
    (config / "connectors.yaml").write_text(yaml.safe_dump(connectors, allow_unicode=True))
    flow = yaml.safe_load((ROOT / "config/examples/matrix/flows" / f"{FLOW}.yaml").read_text())
    flow.update(enabled=True, trigger={"interval_s": 2})
    (config / "flows" / f"{FLOW}.yaml").write_text(yaml.safe_dump(flow, allow_unicode=True))
    return {
        **migrated,
        **sandbox.env(),
        "SYNC_CONFIG_DIR": str(config),
        "MATRIX_BOT_ACCESS_TOKEN": people["bot"].access_token,
    }


@pytest.fixture
def running(matrix_env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """A real worker and a real Beat (the flow's pulls, the /sync ticks)."""
    worker = start_worker(matrix_env, tmp_path / "worker.log")
    out = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-l", "INFO"]
    cmd += ["-s", str(tmp_path / "celerybeat-schedule")]
    beat = subprocess.Popen(
        cmd, env=matrix_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield
    finally:
        stop(beat)
        stop(worker)
        out.close()


# -- helpers ----------------------------------------------------------------------------------
def new_approval(sandbox: SandboxClient) -> tuple[str, str]:
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    return str(made["requestId"]), title


def cards_in_rooms(synapse: Synapse, who: MatrixUser, title: str) -> list[tuple[str, dict]]:
    """(room, event) of every card (a message carrying its source id) about `title`."""
    return [
        (room_id, event)
        for room_id, event in messages_in_rooms(synapse, who, title)
        if SOURCE_ID_KEY in event["content"]
    ]


def told(synapse: Synapse, who: MatrixUser, title: str) -> list[str]:
    """The bodies of the plain messages (no card) about `title` in `who`'s rooms."""
    return [
        event["content"]["body"]
        for _, event in messages_in_rooms(synapse, who, title)
        if SOURCE_ID_KEY not in event["content"]
    ]


def messages_in_rooms(synapse: Synapse, who: MatrixUser, title: str) -> list[tuple[str, dict]]:
    """(room, event) of every message about `title` in `who`'s rooms, invitations accepted."""
    for room_id in synapse.invited_rooms(who):
        synapse.join(who, room_id)
    rooms = synapse.call(who, "GET", "/joined_rooms")["joined_rooms"]
    return [
        (room_id, event)
        for room_id in rooms
        for event in synapse.messages(who, room_id)
        if event["type"] == "m.room.message"
        and "m.new_content" not in event["content"]
        and title in event["content"].get("body", "")
    ]


def the_card(synapse: Synapse, who: MatrixUser, title: str) -> tuple[str, dict]:
    found = wait_for(
        lambda: cards_in_rooms(synapse, who, title), DEADLINE_S, what=f"the card of {title}"
    )
    [(room_id, card)] = found
    return room_id, card


def handled(env: dict[str, str], event_id: str) -> dict[str, Any]:
    """The inbound event recorded for a Matrix event, once the worker has handled it."""
    engine = engine_for(env["DATABASE_URL"])

    def done() -> dict[str, Any] | None:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(inbound_events).where(inbound_events.c.event_id == event_id)
            ).one_or_none()
        if row is None or row.status == EventStatus.QUEUED.value:
            return None
        return dict(row._mapping)

    try:
        found: dict[str, Any] = wait_for(done, DEADLINE_S, what=f"event {event_id} handled")
        return found
    finally:
        engine.dispose()


def edits(synapse: Synapse, who: MatrixUser, room_id: str, card_id: str) -> list[dict]:
    return [
        e
        for e in synapse.messages(who, room_id)
        if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"]["event_id"] == card_id
    ]


# -- the flow ---------------------------------------------------------------------------------
def test_an_oa_approval_reaches_its_approver_once_and_their_tick_approves_it_once(
    matrix_env, running, sandbox: SandboxClient, synapse: Synapse, people, tmp_path: Path
) -> None:
    approver = people[APPROVER]
    request_id, title = new_approval(sandbox)

    room_id, card = the_card(synapse, approver, title)
    first = synapse.react(approver, room_id, card["event_id"], "✅")
    handled(matrix_env, first)
    again = synapse.react(approver, room_id, card["event_id"], "👍")  # a second press
    handled(matrix_env, again)

    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    assert len(cards_in_rooms(synapse, approver, title)) == 1  # every pull since: no new card
    [edit] = wait_for(
        lambda: edits(synapse, approver, room_id, card["event_id"]), DEADLINE_S, what="the edit"
    )
    assert "Approved by" in edit["content"]["m.new_content"]["body"]
    [result] = wait_for(
        lambda: told(synapse, people[APPLICANT], title), DEADLINE_S, what="the applicant told"
    )
    assert "Approved" in result
    logs = [(tmp_path / name).read_text("utf-8", "replace") for name in ("worker.log", "beat.log")]
    assert not [log for log in logs if people["bot"].access_token in log]


def test_a_reply_reject_rejects_the_request_as_the_approver(
    matrix_env, running, sandbox: SandboxClient, synapse: Synapse, people
) -> None:
    approver = people[APPROVER]
    request_id, title = new_approval(sandbox)

    room_id, card = the_card(synapse, approver, title)
    reply = synapse.reply(approver, room_id, card["event_id"], "reject dates overlap a release")
    handled(matrix_env, reply)

    assert oa_actions(sandbox, request_id) == [("reject", oa_user_id(APPROVER))]


def test_a_reaction_from_someone_who_is_not_the_approver_decides_nothing(
    matrix_env, running, sandbox: SandboxClient, synapse: Synapse, people
) -> None:
    approver, other = people[APPROVER], people[OTHER]
    request_id, title = new_approval(sandbox)
    room_id, card = the_card(synapse, approver, title)
    synapse.invite(people["bot"], room_id, other)
    synapse.join(other, room_id)

    press = synapse.react(other, room_id, card["event_id"], "✅")
    row = handled(matrix_env, press)

    assert row["status"] == EventStatus.DONE.value
    assert oa_actions(sandbox, request_id) == []
    [why] = wait_for(lambda: told(synapse, other, title), DEADLINE_S, what="the presser told")
    assert "you are not an approver" in why
    assert edits(synapse, approver, room_id, card["event_id"]) == []
