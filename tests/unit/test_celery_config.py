"""The Celery settings are the at-least-once contract of DESIGN.md section 4."""

from __future__ import annotations

import pytest

from sync_pipeline.dispatch import QUEUES, celery_config
from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.processes import free_port
from sync_pipeline.services import check_broker
from sync_pipeline.settings import load_settings

SETTINGS = load_settings(
    {"REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": "postgresql://u@h/db"}
)


def test_tasks_are_acked_after_they_run_and_requeued_if_the_worker_dies() -> None:
    config = celery_config(SETTINGS)

    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1


def test_visibility_timeout_is_above_the_longest_task() -> None:
    config = celery_config(SETTINGS)

    visibility = config["broker_transport_options"]["visibility_timeout"]
    assert visibility > config["task_time_limit"] > config["task_soft_time_limit"]


def test_only_json_is_accepted() -> None:
    config = celery_config(SETTINGS)

    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == config["result_serializer"] == "json"


def test_queue_per_kind_of_work_routed_by_task_name() -> None:
    config = celery_config(SETTINGS)

    assert [q.name for q in config["task_queues"]] == list(QUEUES)
    assert config["task_routes"]["pull.*"] == {"queue": "pull"}
    assert config["task_create_missing_queues"] is False


def test_results_are_kept_only_where_asked_for() -> None:
    assert celery_config(SETTINGS)["task_ignore_result"] is True


def test_given_an_unreachable_rabbitmq_broker_then_the_check_names_it_in_one_masked_line() -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}//"

    with pytest.raises(ServiceUnavailable) as down:
        check_broker(url, timeout_s=1.0)

    assert down.value.service == "broker"
    assert "s3cret" not in str(down.value)
    assert "\n" not in str(down.value)
