"""A flow asks each stream only for what its connector declares (the class's STREAMS, read
through the registry): anything else is refused at load, naming the file and key, instead of
failing every run (or becoming a dead letter per record)."""

from __future__ import annotations

import pytest

from sync_pipeline.config.loader import load_config
from tests.unit.config.test_examples import CONFIG_DIR


def problems(tree) -> dict[str, str]:
    return dict(tree.error().problems)


def test_given_oa_project_progress_as_a_scheduled_source_it_is_refused(tree) -> None:
    tree.flow("x", source={"connector": "oa", "stream": "project_progress"})

    assert problems(tree)["source.stream"] == (
        "expected a stream the oa connector can read on a schedule (approvals); "
        "project_progress can only be written"
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            {"connector": "oa", "stream": "attendance"},
            "expected a stream of the oa connector: project_progress, todos",
        ),
        (
            {"connector": "wecom", "stream": "checkins"},
            "expected a stream of the wecom connector: messages",
        ),
        (
            {"connector": "wecom", "stream": "approvals"},
            "expected a stream the wecom connector can write (messages); "
            "approvals can only be read",
        ),
    ],
)
def test_given_a_target_stream_its_connector_cannot_write_it_is_refused(
    tree, target: dict[str, str], expected: str
) -> None:
    tree.flow("x", target=target)

    assert problems(tree)["target.stream"] == expected


def test_given_webhook_events_asked_of_a_stream_that_has_none_it_is_refused(tree) -> None:
    tree.flow(
        "x",
        source={"connector": "wecom", "stream": "approvals"},
        target={"connector": "oa", "stream": "todos"},
        trigger={"interval_s": 60, "webhook": True},
    )

    assert problems(tree)["trigger.webhook"] == (
        "expected a source stream whose wecom webhook events start a sync (messages); "
        "approvals can only be read"
    )


def test_given_a_stream_synced_only_by_events_on_a_schedule_it_is_refused(tree) -> None:
    tree.flow(
        "x",
        source={"connector": "wecom", "stream": "messages"},
        target={"connector": "oa", "stream": "todos"},
    )

    assert problems(tree)["source.stream"] == (
        "expected a stream the wecom connector can read on a schedule (approvals); "
        "messages can only be written, synced on message events"
    )


def test_given_an_unknown_source_stream_the_readable_ones_are_listed(tree) -> None:
    tree.flow("x", source={"connector": "oa", "stream": "attendance"})

    assert problems(tree)["source.stream"] == "expected a stream of the oa connector: approvals"


def test_every_shipped_flow_asks_its_streams_only_for_what_they_can_do() -> None:
    config = load_config(CONFIG_DIR, environment=False)

    assert len(config.flows) == len(list((CONFIG_DIR / "flows").glob("*.yaml")))
