"""transform: source payload -> target shape; unmappable records become dead letters."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.records import Record
from sync_pipeline.stages import Template
from sync_pipeline.stages.transform import (
    ConstField,
    FieldSpec,
    FromField,
    RecordMapping,
    TemplateField,
    UserField,
    ValueMapField,
    transform,
)


class Directory:
    """The people of a small company: OA ids -> WeCom ids, with employee numbers."""

    def __init__(self, wecom: dict[str, str], employees: dict[str, str] | None = None) -> None:
        self.wecom, self.employees = wecom, employees or {}
        self.questions: list[tuple[str, str, str]] = []

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        self.questions.append((from_system, user_id, to_system))
        return self.wecom.get(user_id) if (from_system, to_system) == ("oa", "wecom") else None

    def employee_no(self, system: str, user_id: str) -> str | None:
        return self.employees.get(user_id)


class DirectoryDown:
    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        raise ServiceUnavailable("PostgreSQL", "postgresql://db/sync", "connection refused")

    def employee_no(self, system: str, user_id: str) -> str | None:
        return None


def approval(source_id: str = "8812", **changes: Any) -> Record:
    payload: dict[str, Any] = {
        "id": source_id,
        "title": "Annual leave",
        "template": "leave",
        "status": "pending",
        "applicant": "105",
        "current_approvers": ["101"],
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-02T09:30:00Z",
        "form": {"days": 3},
        "url": "https://oa.example/r/8812",
    }
    payload.update(changes)
    return Record(source_id, payload["updated_at"], payload["updated_at"], payload)


def mapping(**specs: FieldSpec) -> RecordMapping:
    return RecordMapping(fields=specs)


DIRECTORY = {"105": "zhangsan", "101": "boss", "102": "cfo"}
TO_WECOM = {"from_system": "oa", "to_system": "wecom"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (FromField("title"), "Annual leave"),
        (FromField("form.days"), 3),
        (FromField("current_approvers.0"), "101"),
        (FromField("form.reason", default="none given"), "none given"),
        (ConstField("approval"), "approval"),
        (TemplateField(Template.parse("{title}, {form.days} days")), "Annual leave, 3 days"),
        (TemplateField(Template.parse("{title} by {applicant_name}"), default="?"), "?"),
        (TemplateField(Template.parse("{title}"), default="?"), "Annual leave"),
        (ValueMapField("status", {"pending": "Pending"}), "Pending"),
        (ValueMapField("status", {"approved": "Approved"}, default="Other"), "Other"),
        (UserField("applicant", **TO_WECOM), "zhangsan"),
        (UserField("current_approvers", **TO_WECOM), ["boss"]),
        (UserField("form.deputy", **TO_WECOM, default=None), None),
    ],
)
def test_given_a_field_spec_the_target_field_holds_its_value(spec, expected) -> None:
    result = transform([approval()], mapping(value=spec), Directory(DIRECTORY))

    assert result.dead == ()
    assert result.records[0].payload == {"value": expected}


def test_a_transformed_record_keeps_its_identity_and_version() -> None:
    record = approval()

    result = transform([record], mapping(title=FromField("title")), Directory(DIRECTORY))

    [out] = result.records
    assert (out.source_id, out.version, out.cursor_value) == (
        record.source_id,
        record.version,
        record.cursor_value,
    )


def test_given_an_unmapped_user_the_record_is_dead_lettered_with_who_and_the_batch_goes_on() -> (
    None
):
    directory = Directory(DIRECTORY, employees={"107": "E00042"})
    lost, fine = approval("1", applicant="107"), approval("2")

    result = transform(
        [lost, fine], mapping(applicant=UserField("applicant", **TO_WECOM)), directory
    )

    assert result.dead == ((lost, "no wecom user for OA user 107 (employee E00042)"),)
    assert [r.source_id for r in result.records] == ["2"]


def test_given_one_unmapped_approver_among_several_the_record_is_dead_lettered() -> None:
    record = approval(current_approvers=["101", "109"])

    result = transform(
        [record],
        mapping(approvers=UserField("current_approvers", **TO_WECOM)),
        Directory(DIRECTORY),
    )

    assert result.dead == ((record, "no wecom user for OA user 109"),)


@pytest.mark.parametrize(
    ("spec", "changes", "reason"),
    [
        (FromField("title"), {"title": None}, "missing required field title (for value)"),
        (FromField("form.reason"), {}, "missing required field form.reason (for value)"),
        (
            TemplateField(Template.parse("{title} by {applicant_name}")),
            {},
            "missing field applicant_name (for the template of value)",
        ),
        (
            ValueMapField("status", {"approved": "Approved"}),
            {},
            "status 'pending' is not in the value map of value",
        ),
        (
            UserField("applicant", **TO_WECOM),
            {"applicant": None},
            "missing required field applicant (for value)",
        ),
    ],
)
def test_given_a_required_value_missing_the_record_is_dead_lettered(spec, changes, reason) -> None:
    record = approval(**changes)

    result = transform([record], mapping(value=spec), Directory(DIRECTORY))

    assert result.records == ()
    assert result.dead == ((record, reason),)


def test_the_directory_is_asked_once_per_person_per_batch() -> None:
    directory = Directory(DIRECTORY)
    batch = [approval(str(n)) for n in range(5)]

    transform(batch, mapping(approvers=UserField("current_approvers", **TO_WECOM)), directory)

    assert directory.questions == [("oa", "101", "wecom")]


def test_given_the_directory_down_the_batch_fails_instead_of_dead_lettering_everyone() -> None:
    with pytest.raises(ServiceUnavailable):
        transform([approval()], mapping(a=UserField("applicant", **TO_WECOM)), DirectoryDown())


@pytest.mark.parametrize(
    ("value", "link"),
    [
        ("oc_1", "https://chat.example.com/c/oc_1?from=oa"),
        ("x&admin=1#top", "https://chat.example.com/c/x%26admin%3D1%23top?from=oa"),
        ("../../evil", "https://chat.example.com/c/..%2F..%2Fevil?from=oa"),
        ("a b?c", "https://chat.example.com/c/a%20b%3Fc?from=oa"),
    ],
)
def test_given_a_link_template_a_value_stays_inside_its_own_segment(value, link) -> None:
    template = Template.parse("https://chat.example.com/c/{chat}?from=oa")

    assert template.render({"chat": value}) == link


def test_given_a_text_template_its_values_are_kept_as_they_are() -> None:
    template = Template.parse("{title}: see {url}")

    rendered = template.render({"title": "a&b", "url": "https://e.example/?q=1"})

    assert rendered == "a&b: see https://e.example/?q=1"
