"""Log lines: JSON objects with SYNC_LOG_FORMAT=json, readable text otherwise; each carries the
flow, run, task and record it was logged for, where known, and no secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sync_pipeline.logging import (
    ContextFilter,
    RedactingFilter,
    formatter,
    log_context,
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("test.log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_given_json_format_each_line_is_one_object_with_its_context(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter("json"))

    with log_context(flow="approvals", run_id=7, task_id="t-1"), log_context(record_id="REQ-9"):
        logger.info("wrote %d", 1)

    line = json.loads(stream.getvalue())
    assert line["level"] == "INFO"
    assert line["logger"] == "test.log_format"
    assert line["msg"] == "wrote 1"
    assert line["ts"].endswith("+00:00")
    assert (line["flow"], line["run_id"], line["task_id"], line["record_id"]) == (
        "approvals",
        7,
        "t-1",
        "REQ-9",
    )


def test_given_no_context_a_json_line_has_no_context_fields(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter("json"))

    logger.info("idle")

    assert set(json.loads(stream.getvalue())) == {"ts", "level", "logger", "msg"}


def test_given_text_format_the_context_follows_the_message_in_brackets(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter("text"))

    with log_context(flow="approvals", run_id=7):
        logger.warning("slow")

    assert (
        stream.getvalue()
        .rstrip()
        .endswith("WARNING test.log_format: slow [flow=approvals run_id=7]")
    )


def test_a_context_ends_with_its_block(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter("json"))

    with log_context(flow="approvals"):
        pass
    logger.info("after")

    assert "flow" not in json.loads(stream.getvalue())


def test_given_json_format_a_secret_in_the_message_or_traceback_is_masked(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter("json"))

    def refuse() -> None:
        raise ValueError("corpsecret=hunter2")

    try:
        refuse()
    except ValueError:
        logger.exception("token=hunter2 refused")

    assert "hunter2" not in stream.getvalue()
    assert json.loads(stream.getvalue())["exc"].startswith("Traceback")
