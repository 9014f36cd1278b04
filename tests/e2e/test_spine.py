"""The sync spine end to end: OA approvals -> WeCom, through a real worker, real Redis and
PostgreSQL, and the sandbox's emulators, whose ledger proves every effect happened once.
"""

from __future__ import annotations

import collections
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from sync_pipeline.devtools.sandbox.wecom import userid_for
from sync_pipeline.devtools.sandbox.world import Approval, World
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import build_runtime
from sync_pipeline.processes import free_port
from sync_pipeline.settings import load_settings
from sync_pipeline.state import locks, pages, runs
from sync_pipeline.state.db import engine_for
from tests.conftest import next_second, syncctl, wait_for
from tests.e2e.spine import (
    APPROVALS,
    FLOW,
    SEED,
    expected_wecom_messages,
    list_calls,
    oa_user_id,
    start_redis,
    start_worker,
    stop,
    wecom_sends,
)

pytestmark = pytest.mark.slow


def sync(env: dict[str, str]) -> runs.Run:
    """`syncctl run FLOW --wait`, then the run it made."""
    result = syncctl("run", FLOW, "--wait", "--timeout", "240", env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        run = runs.latest(conn, FLOW)
    assert run is not None
    return run


def test_first_sync_sends_exactly_the_expected_messages(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    run = sync(sandbox_env)

    sent = wecom_sends(sandbox)
    assert collections.Counter(sent) == expected_wecom_messages(World(SEED), APPROVALS)
    assert run.status is runs.RunStatus.SUCCEEDED
    assert run.counts["written"] == len(sent)
    assert run.counts["pulled"] == APPROVALS


def test_second_sync_without_changes_sends_nothing_and_makes_one_list_call(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    sync(sandbox_env)
    ledger_before, lists_before = sandbox.last_seq(), list_calls(sandbox)

    run = sync(sandbox_env)

    assert sandbox.ledger("wecom", since_seq=ledger_before) == []
    assert list_calls(sandbox) - lists_before == 1
    assert run.counts["written"] == 0
    assert run.cursor_after == run.cursor_before


def test_three_approvals_decided_in_the_oa_give_three_messages_and_three_updated_cards(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    sync(sandbox_env)
    world = World(SEED)
    single = [
        a for a in world.approvals(APPROVALS) if a.state == "pending" and len(a.approver_nos) == 1
    ][:3]
    for approval in single:
        sandbox.transition(approval.request_id, "approve", by=approver(approval))
    next_second()
    before = sandbox.last_seq()

    run = sync(sandbox_env)

    new = collections.Counter(e["endpoint"] for e in sandbox.ledger("wecom", since_seq=before))
    # the applicants told, and the approvers' cards no longer asking for a decision
    assert new == {"message/send": 3, "message/update_template_card": 3}
    assert run.counts["written"] == 6


def test_an_approval_updated_while_a_sync_runs_is_neither_skipped_nor_sent_twice(
    sandbox_env, sandbox
) -> None:
    """Two approvals are approved between page reads: one from a page already read, one that
    no page has reached yet. The steps run in this process so the edit lands exactly there."""
    rt = build_runtime(load_settings(sandbox_env), sandbox_env)
    world = World(SEED)
    single = {
        a.request_id: a
        for a in world.approvals(APPROVALS)
        if a.state == "pending" and len(a.approver_nos) == 1
    }
    run_id = steps.start_run(rt, FLOW, "test")
    assert run_id is not None
    page_ids: list[int] = []
    edited: dict[str, Approval] = {}

    def enqueue(page_id: int) -> None:
        page_ids.append(page_id)
        if len(page_ids) == 1:  # the first page is written while the pull goes on, then...
            steps.plan(rt, page_id)
            steps.write(rt, page_id)
            with rt.engine.connect() as conn:
                first_page = {r.source_id for r in pages.get(conn, page_id).records}
            edited["read"] = next(single[i] for i in sorted(first_page) if i in single)
            edited["unread"] = max(
                (a for i, a in single.items() if i not in first_page), key=lambda a: a.updated_ms
            )
            for approval in edited.values():
                sandbox.transition(approval.request_id, "approve", by=approver(approval))

    steps.pull(rt, run_id, enqueue)
    for page_id in page_ids[1:]:
        steps.plan(rt, page_id)
        steps.write(rt, page_id)
        steps.commit(rt, run_id)
    steps.run_inline(rt, FLOW)  # the next pull reads what changed meanwhile
    steps.run_inline(rt, FLOW)  # and a third changes nothing

    sent = collections.Counter(wecom_sends(sandbox))
    assert all(n == 1 for n in sent.values()), sent

    def kinds(approval: Approval) -> set[str]:
        return {kind for kind, _, number in sent if number == approval.number}

    assert kinds(edited["read"]) == {"card", "message"}  # the card, then the decision
    assert kinds(edited["unread"]) == {"message"}  # first read already decided


def test_redis_restarted_empty_mid_run_loses_nothing_and_doubles_nothing(
    sandbox_env, sandbox, tmp_path: Path
) -> None:
    port = free_port()
    own_redis = start_redis(port, tmp_path)
    env = {**sandbox_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    sandbox.fault("wecom", "latency", params={"ms": 40})
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        queued = syncctl("run", FLOW, env=env)
        assert queued.returncode == 0, queued.stderr
        wait_for(lambda: len(sandbox.ledger("wecom")) >= 40, 120, what="writes to begin")
        stop(own_redis, sig=signal.SIGKILL)
        own_redis = start_redis(port, tmp_path)  # the same address, nothing in it
        assert locks.holder(redis.Redis(port=port), FLOW) is None  # the run's lock went too
        sandbox.clear_faults("wecom")

        run = sync(env)  # the next scheduled pull
    finally:
        stop(worker)
        stop(own_redis)

    assert run.status is runs.RunStatus.SUCCEEDED
    sent = wecom_sends(sandbox)
    assert collections.Counter(sent) == expected_wecom_messages(World(SEED), APPROVALS)


def break_two_ways(sandbox, sandbox_store) -> tuple[Any, dict[str, Any], str]:
    """One person leaves WeCom (their OA requests can no longer be mapped) and one new OA
    request loses its applicant: (the leaver, their WeCom user as it was, the request id)."""
    world = World(SEED)
    leaver = world.person(
        next(a for a in world.approvals(APPROVALS) if a.state == "pending").current_approver_nos[0]
    )
    account = sandbox_store.get("wecom", "user", userid_for(leaver))
    assert account is not None
    sandbox_store.conn().execute(
        "DELETE FROM objects WHERE platform = 'wecom' AND kind = 'user' AND id = ?",
        (userid_for(leaver),),
    )
    created = sandbox.create_approval(applicant="E00001", approvers=["E00002"], template="leave")
    broken = sandbox_store.get("oa", "approval", created["requestId"])
    assert broken is not None
    broken["creatorId"] = ""
    sandbox_store.put("oa", "approval", created["requestId"], broken)
    next_second()
    return leaver, account, str(created["requestId"])


def involving(leaver: Any) -> set[str]:
    return {
        a.request_id
        for a in World(SEED).approvals(APPROVALS)
        if a.applicant_no == leaver.employee_no or leaver.employee_no in a.current_approver_nos
    }


def test_bad_records_become_dead_letters_and_the_rest_sync(
    sandbox_env, sandbox_worker, sandbox, sandbox_store
) -> None:
    world = World(SEED)
    leaver, _, created = break_two_ways(sandbox, sandbox_store)

    run = sync(sandbox_env)

    involved = involving(leaver)
    reasons = {d["source_id"]: d["reason"] for d in dlq(sandbox_env)}
    assert set(reasons) == involved | {created}
    assert "missing required field applicant" in reasons[created]
    assert all(
        f"no wecom user for OA user {oa_user_id(leaver.employee_no)}" in reasons[r]
        for r in involved
    )
    assert run.status is runs.RunStatus.SUCCEEDED
    assert run.counts["dead_lettered"] == len(reasons)
    # A dead-lettered approval notifies nobody, its other people included (the mapping maps
    # applicant and approvers for every approval); everything else is sent.
    expected = expected_wecom_messages(world, APPROVALS)
    involved_numbers = {int(request_id[1:]) for request_id in involved}
    for key in [k for k in expected if k[2] in involved_numbers]:
        del expected[key]
    assert collections.Counter(wecom_sends(sandbox)) == expected
    assert run.cursor_after is not None
    assert run.cursor_after > (run.cursor_before or "")


def test_dead_letters_replayed_once_their_causes_are_fixed_are_sent_once_and_closed(
    sandbox_env, sandbox_worker, sandbox, sandbox_store
) -> None:
    leaver, account, created = break_two_ways(sandbox, sandbox_store)
    sync(sandbox_env)
    assert len(dlq(sandbox_env)) == len(involving(leaver)) + 1
    # The leaver is back in WeCom, and the request gets its applicant again.
    sandbox_store.put("wecom", "user", userid_for(leaver), account)
    fixed = sandbox_store.get("oa", "approval", created)
    assert fixed is not None
    fixed["creatorId"] = oa_user_id("E00001")
    sandbox_store.put("oa", "approval", created, fixed)

    replayed = syncctl("dlq", "replay", "--json", env=sandbox_env, timeout=300)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    [account_of] = json.loads(replayed.stdout)
    assert (account_of["closed"], account_of["failing"]) == (len(involving(leaver)) + 1, 0)
    assert dlq(sandbox_env) == []
    expected = expected_wecom_messages(World(SEED), APPROVALS)
    expected[("card", userid_for(World(SEED).person("E00002")), int(created[1:]))] += 1
    assert collections.Counter(wecom_sends(sandbox)) == expected  # each exactly once


def test_a_dead_letter_whose_cause_remains_stays_open(
    sandbox_env, sandbox_worker, sandbox, sandbox_store
) -> None:
    _, _, created = break_two_ways(sandbox, sandbox_store)
    sync(sandbox_env)
    before = len(dlq(sandbox_env))

    replayed = syncctl("dlq", "replay", "--json", env=sandbox_env, timeout=300)

    assert replayed.returncode == 1  # some letters still fail: scripts can tell
    [account_of] = json.loads(replayed.stdout)
    assert (account_of["closed"], account_of["failing"]) == (0, before)
    letters = dlq(sandbox_env)
    assert len(letters) == before
    assert {d["replay_count"] for d in letters} == {1}
    assert "missing required field applicant" in next(
        d["reason"] for d in letters if d["source_id"] == created
    )


def test_expired_tokens_and_rate_limits_are_recovered_without_loss(
    sandbox_env, sandbox_worker, sandbox
) -> None:
    sandbox.fault("oa", "token_expire")
    sandbox.fault("wecom", "token_expire")
    sandbox.fault("oa", "ratelimit", rate=1.0, for_s=3)  # 429 with Retry-After: 1
    sandbox.fault("wecom", "ratelimit", rate=1.0, for_s=3)  # 45009: wait out the minute

    run = sync(sandbox_env)

    assert run.status is runs.RunStatus.SUCCEEDED
    assert dlq(sandbox_env) == []
    sent = wecom_sends(sandbox)
    assert collections.Counter(sent) == expected_wecom_messages(World(SEED), APPROVALS)


# -- helpers -----------------------------------------------------------------------------------
def approver(approval: Approval) -> str:
    """The OA user id of the approval's current approver."""
    return oa_user_id(approval.current_approver_nos[0])


def dlq(env: dict[str, str]) -> list[dict]:
    result = syncctl("dlq", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _last_run_done(env: dict[str, str]) -> bool:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        run = runs.latest(conn, FLOW)
    return run is not None and run.done
