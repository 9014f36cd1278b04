"""`syncctl effects list` and `syncctl effects settle`: the effects parked because their outcome
is unknown, shown with what to do, and closed by an operator who checked the vendor: --done
records it made, --retry makes it once more through its dead letter and the normal pipeline."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.pipeline import effects as protocol
from sync_pipeline.pipeline.runtime import build_runtime
from sync_pipeline.records import Notification, NotifyKind, WriteOp, WriteRequest
from sync_pipeline.settings import load_settings
from sync_pipeline.state import deadletters, effects, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import effects as effects_table
from tests.conftest import syncctl

FLOW = "approvals_to_wecom"
JSON_KEYS = {"id", "key", "flow", "record", "target", "kind", "status", "age_s", "error", "next"}


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """The module's own Redis: its worker takes no other run's tasks, nor they its."""
    return private_redis_url


def effect(
    env: dict[str, str], status: effects.EffectStatus, source_id: str = "R1", error: str = ""
) -> effects.Effect:
    """An effect of FLOW for a message to u1 about `source_id`, left with `status`."""
    key = uuid.uuid4().hex * 2
    about = {key: effects.About(source_id=source_id, kind="message", recipient="u1")}
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        effects.claim(conn, FLOW, "wecom", [key], about)
        if status is not effects.EffectStatus.PENDING:
            effects.finish(conn, key, status, error=error or None)
        return effects.get(conn, [key])[key]


def stored(env: dict[str, str], key: str) -> effects.Effect:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        return effects.get(conn, [key])[key]


def listed(env: dict[str, str], *options: str) -> list[dict[str, Any]]:
    result = syncctl("effects", "list", "--json", *options, env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def letter_for(env: dict[str, str], parked: effects.Effect) -> int:
    """The dead letter a parked effect leaves: the planned write itself."""
    request = WriteRequest(
        parked.key,
        parked.source_id or "",
        WriteOp.CREATE,
        Notification(NotifyKind.MESSAGE, None, {}),
    )
    row = (parked.source_id or "", request.to_json(), "outcome unknown", "X")
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        deadletters.add(conn, FLOW, None, [row])
        [found] = [
            d for d in deadletters.open_letters(conn, FLOW) if d.record["effect_key"] == parked.key
        ]
    return found.id


def open_letter_ids(env: dict[str, str]) -> set[int]:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        return {d.id for d in deadletters.open_letters(conn, FLOW)}


# -- list --------------------------------------------------------------------------------------
def test_list_shows_the_parked_effects_with_what_to_do(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN, error="crash window")
    effect(migrated, effects.EffectStatus.DONE)

    [row] = listed(migrated)

    assert set(row) == JSON_KEYS
    assert (row["id"], row["key"], row["flow"], row["record"]) == (
        parked.id,
        parked.key,
        FLOW,
        "R1",
    )
    assert (row["target"], row["kind"], row["status"], row["error"]) == (
        "wecom u1",
        "message",
        "unknown",
        "crash window",
    )
    assert isinstance(row["age_s"], float)
    assert row["age_s"] >= 0
    assert f"syncctl effects settle {parked.id} --done" in row["next"]
    assert f"syncctl effects settle {parked.id} --retry" in row["next"]


def test_list_by_status_shows_the_newest_up_to_the_limit(migrated) -> None:
    effect(migrated, effects.EffectStatus.DONE, source_id="R1")
    newest = effect(migrated, effects.EffectStatus.DONE, source_id="R2")

    rows = listed(migrated, "--status", "done", "--limit", "1")

    assert [(r["id"], r["status"]) for r in rows] == [(newest.id, "done")]


def test_list_reports_an_age_from_the_first_claim(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN)
    with engine_for(migrated["DATABASE_URL"]).begin() as conn:
        conn.execute(
            effects_table.update()
            .where(effects_table.c.key == parked.key)
            .values(created_at=sa.func.now() - timedelta(hours=5))
        )

    [row] = listed(migrated)

    assert 5 * 3600 <= row["age_s"] < 5 * 3600 + 600


def test_list_as_a_table_names_the_next_step(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN)

    result = syncctl("effects", "list", env={**migrated, "COLUMNS": "400"})

    assert result.returncode == 0, result.stderr
    assert f"syncctl effects settle {parked.id} --done" in result.stdout


# -- settle --------------------------------------------------------------------------------------
def test_settle_done_records_the_effect_made_and_closes_its_letter(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN)
    letter = letter_for(migrated, parked)

    result = syncctl("effects", "settle", str(parked.id), "--done", env=migrated)

    assert result.returncode == 0, result.stderr
    assert stored(migrated, parked.key).status is effects.EffectStatus.DONE
    assert letter not in open_letter_ids(migrated)
    assert listed(migrated) == []


def test_settle_retry_without_a_letter_leaves_the_effect_for_the_next_attempt(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN)

    result = syncctl("effects", "settle", str(parked.id), "--retry", env=migrated)

    assert result.returncode == 0, result.stderr
    assert "the next run or event of R1 makes it once" in result.stdout
    assert stored(migrated, parked.key).status is effects.EffectStatus.FAILED  # claimable again
    assert listed(migrated) == []


def test_settle_of_an_unknown_id_is_one_line_and_exit_2(migrated) -> None:
    result = syncctl("effects", "settle", "987654", "--done", env=migrated)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "syncctl: no effect 987654 (see: syncctl effects list)"
    ]


def test_settle_of_an_effect_not_parked_is_one_line_and_exit_2(migrated) -> None:
    made = effect(migrated, effects.EffectStatus.DONE)

    result = syncctl("effects", "settle", str(made.id), "--retry", env=migrated)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is done, not parked" in result.stderr
    assert stored(migrated, made.key).status is effects.EffectStatus.DONE


def test_settle_without_a_verdict_is_refused(migrated) -> None:
    parked = effect(migrated, effects.EffectStatus.UNKNOWN)

    result = syncctl("effects", "settle", str(parked.id), env=migrated)

    assert result.returncode == 2
    assert "--done or --retry" in result.stderr
    assert stored(migrated, parked.key).status is effects.EffectStatus.UNKNOWN


def test_settle_retry_makes_a_parked_message_once_through_the_pipeline(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    rt = build_runtime(load_settings(sandbox_env), sandbox_env)
    title = f"Parked {uuid.uuid4().hex[:10]}"
    to = next(iter(rt.connector("sandbox_wecom").list_users())).user_id
    payload = Notification(NotifyKind.MESSAGE, to, {"text": title})
    request = WriteRequest(uuid.uuid4().hex * 2, "R77", WriteOp.CREATE, payload)
    with rt.engine.begin() as conn:  # a worker died after the send, more than 4 h ago
        effects.claim(conn, FLOW, "wecom", [request.effect_key])
        conn.execute(
            effects_table.update()
            .where(effects_table.c.key == request.effect_key)
            .values(created_at=sa.func.now() - timedelta(hours=5))
        )
        run_id = runs.start_webhook(conn, FLOW, runs.WEBHOOK)
    protocol.make_effects(rt, rt.flow(FLOW), [request], run_id)  # parks it, with its letter
    parked = stored(sandbox_env, request.effect_key)
    assert parked.status is effects.EffectStatus.UNKNOWN

    result = syncctl("effects", "settle", str(parked.id), "--retry", env=sandbox_env, timeout=300)

    assert result.returncode == 0, result.stderr
    assert stored(sandbox_env, request.effect_key).status is effects.EffectStatus.DONE
    sent = [
        e
        for e in sandbox.ledger("wecom")
        if e["endpoint"] == "message/send" and title in json.dumps(e["body"], ensure_ascii=False)
    ]
    assert len(sent) == 1
    assert open_letter_ids(sandbox_env) == set()
