"""A real worker process answers the health task through a real broker."""

from __future__ import annotations

from sync_pipeline.dispatch import run_health_check
from sync_pipeline.state.migrate import head_revision


def test_health_task_is_answered_by_a_worker_process(worker, settings) -> None:
    answer = run_health_check(settings, timeout_s=60)

    assert answer["worker"].endswith(tuple(str(n) for n in range(10)))  # host:pid
    assert answer["schema"] == head_revision()
    assert answer["schema_current"] is True
    assert answer["redis"]
    assert answer["postgres"]


def test_health_task_result_is_removed_once_read(worker, settings, redis_url) -> None:
    import redis

    run_health_check(settings, timeout_s=60)

    keys = redis.Redis.from_url(redis_url).keys("celery-task-meta-*")
    assert keys == []
