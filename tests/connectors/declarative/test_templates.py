"""A template that fails on one record's data costs that record, never the flow (invariant 1):
TemplateFailed is a RecordError, so the record is dead-lettered with the template and why."""

from __future__ import annotations

import pytest

from sync_pipeline.config.declarative import TEMPLATES, Template
from sync_pipeline.errors import RecordError, TemplateFailed
from sync_pipeline.failures import about_record


def template(text: str) -> Template:
    return Template(text, TEMPLATES.from_string(text))


def test_a_template_failing_on_a_record_s_data_is_that_record_s_error() -> None:
    share = template("{{ record.total / record.count }}")

    with pytest.raises(TemplateFailed) as failed:
        share.value({"record": {"total": 10, "count": 0}})

    assert isinstance(failed.value, RecordError)
    assert about_record(failed.value)
    assert failed.value.reason == "ZeroDivisionError: division by zero"


def test_a_rendered_template_failing_says_which_template_and_why() -> None:
    title = template("Request {{ record.id }}: {{ 1 / record.count }}")

    with pytest.raises(TemplateFailed) as failed:
        title.render({"record": {"id": "r1", "count": 0}})

    assert str(failed.value) == (
        "the template 'Request {{ record.id }}: {{ 1 / record.count }}' failed on this"
        " record's data: ZeroDivisionError: division by zero"
    )


def test_a_failing_template_that_reads_credentials_names_only_the_error_s_kind() -> None:
    signed = template("{{ (credentials.secret ~ record.id) / 2 }}")

    with pytest.raises(TemplateFailed) as failed:
        signed.value({"credentials": {"secret": "s3cret-value"}, "record": {"id": "r1"}})

    assert "s3cret-value" not in str(failed.value)
    assert failed.value.reason == "TypeError"
