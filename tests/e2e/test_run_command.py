"""`syncctl run FLOW`: what it refuses to run, and why, before anything is queued."""

from __future__ import annotations

import redis

from tests.conftest import syncctl


def queued_pulls(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).llen("pull"))


def test_given_a_flow_only_webhooks_trigger_run_says_it_has_nothing_to_pull(
    service_env, redis_url
) -> None:
    result = syncctl("run", "agora_important_messages_to_oa_todos", env=service_env)

    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "syncctl: agora_important_messages_to_oa_todos has nothing to pull: "
        "sandbox_agora/messages is synced only by its webhook events"
    )
    assert queued_pulls(redis_url) == 0
