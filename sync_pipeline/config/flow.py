"""Flows (`config/flows/*.yaml`, one per file): what to sync, when, how, and whom to tell.

A flow file reads top to bottom as the flow runs: `source` and `target`, the `trigger`, the
`mapping` from source fields to target fields, the `rules` a record must pass, the `dedupe_key`,
and `notify`: which events message whom. The schema builds the stages' own frozen values
(mapping specs, rules, notify rules), so a flow that loads cannot fail later on a bad template
or regex. Cross-file checks (connector names, vendors, what their streams can do) live in
`loader.py`.

A setting the pipeline would not honour is refused, never accepted and ignored: two-way sync
(`two_way: true`, `conflict`, `ownership`) is not implemented yet (stages/resolve.py is not
wired into the pipeline), so those keys are refused with that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from croniter import croniter
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from sync_pipeline.config import MapOf, OneOf, Shape, StrictSchema, strict_schema
from sync_pipeline.records import NotifyKind
from sync_pipeline.stages import MESSAGE_GAPS, MESSAGE_STREAM, MISSING, PATH, Template
from sync_pipeline.stages.dedupe import BY_SOURCE_ID, SOURCE_ID, DedupeKey
from sync_pipeline.stages.plan import STREAM_OF_KIND, NotifyRule
from sync_pipeline.stages.rules import (
    AllOf,
    AnyOf,
    ChangedTo,
    Equals,
    Flag,
    In,
    Keywords,
    Not,
    Regex,
    Rule,
    paths,
    uses_previous,
)
from sync_pipeline.stages.transform import (
    ConstField,
    ExtractField,
    FromField,
    RecordMapping,
    TemplateField,
    UserField,
    ValueMapField,
    needs,
)


class Mode(StrEnum):
    INCREMENTAL = "incremental"  # read from the cursor on
    FULL = "full"  # read everything each run; dedupe keeps it cheap on the target


@dataclass(frozen=True)
class Endpoint:
    connector: str  # a name in connectors.yaml
    stream: str  # e.g. "approvals", "messages", "checkins"


@dataclass(frozen=True)
class Trigger:
    interval_s: int | None  # at most one of interval_s and cron; neither: events only
    cron: str | None  # five fields, as Celery Beat's crontab takes them
    webhook: bool  # events also start a run; the schedule repairs what a lost event missed


@dataclass(frozen=True)
class ResyncConfig:
    """How a full resync of the flow (`syncctl resync`) goes easy on the vendors: it makes at
    most `quota_share` of the tightest rate limit of the flow's two connectors in calls, so
    the scheduled syncs of every flow keep the rest."""

    quota_share: float = 0.5


NIGHTLY = "0 3 * * *"


@dataclass(frozen=True)
class ReconcileConfig:
    """When Beat reconciles the flow's target with what we wrote there (`syncctl reconcile`,
    pipeline/reconcile.py): on `schedule` (five cron fields; None: only by hand), repairing
    what it finds when `repair`. Flows whose target can be read back are reconciled nightly
    unless their file says otherwise; for the others, the key is refused at load."""

    schedule: str | None = NIGHTLY
    repair: bool = False


@dataclass(frozen=True)
class Flow:
    name: str
    description: str
    enabled: bool
    source: Endpoint
    target: Endpoint
    trigger: Trigger
    mode: Mode
    cursor_field: str | None
    lookback_s: int
    page_size: int
    mapping: RecordMapping
    rules: Rule | None  # None: every record syncs
    dedupe_key: DedupeKey
    notify: tuple[NotifyRule, ...]
    resync: ResyncConfig = ResyncConfig()
    reconcile: ReconcileConfig | None = None  # None: not in its file (loader.reconcile_of)


# -- small fields --------------------------------------------------------------------------


def _path(**kwargs: Any) -> fields.Str:
    return fields.Str(
        validate=validate.Regexp(PATH.pattern + r"\Z", error="expected a field name or path"),
        **kwargs,
    )


class _TemplateField(fields.Field[Template]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Template:
        try:
            return Template.parse(fields.Str().deserialize(value))
        except ValueError as exc:
            raise ValidationError(f"expected a template like 'Leave {{title}}': {exc}") from None


class _RegexField(fields.Field[re.Pattern[str]]):
    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> re.Pattern[str]:
        try:
            return re.compile(fields.Str().deserialize(value))
        except re.error as exc:
            raise ValidationError(f"expected a valid regular expression ({exc})") from None


class _Values(fields.Field[tuple[Any, ...]]):
    """A list of values; a single value is taken as a list of one."""

    def __init__(self, inner: fields.Field[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items = fields.List(inner or fields.Raw(), validate=validate.Length(min=1))

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        return tuple(self.items.deserialize(value if isinstance(value, list) else [value]))


def _cron(expression: str) -> None:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValidationError("expected a five-field cron expression like '*/5 * * * *'")


class _DedupeKeyField(fields.Field[DedupeKey]):
    """`[source_id]` (field names) or `"{source_id}:{status}"` (a template)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> DedupeKey:
        if isinstance(value, str):
            return DedupeKey(template=_TemplateField().deserialize(value))
        names = fields.List(_path(), validate=validate.Length(min=1)).deserialize(value)
        return DedupeKey(fields=tuple(names))


# -- mapping: target field -> how to compute it --------------------------------------------


def _system() -> fields.Str:
    """A system's name: a vendor's (wecom, oa...) or a declarative connector's `system:`;
    the loader checks it is the flow's own source's or target's."""
    return fields.Str(
        required=True,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]*$", error="expected a system name"),
    )


FIELD_SHAPES: dict[str, Shape] = {
    "from": (
        strict_schema(
            "FromSpec", **{"from": _path(required=True)}, default=fields.Raw(allow_none=True)
        ),
        lambda d: FromField(d["from"], d.get("default", MISSING)),
    ),
    "const": (
        strict_schema("ConstSpec", const=fields.Raw(required=True, allow_none=True)),
        lambda d: ConstField(d["const"]),
    ),
    "template": (
        strict_schema(
            "TemplateSpec",
            template=_TemplateField(required=True),
            default=fields.Raw(allow_none=True),
        ),
        lambda d: TemplateField(d["template"], d.get("default", MISSING)),
    ),
    "value_map": (
        strict_schema(
            "ValueMapSpec",
            value_map=fields.Nested(
                strict_schema(
                    "ValueMap",
                    **{"from": _path(required=True)},
                    map=fields.Dict(required=True, validate=validate.Length(min=1)),
                    default=fields.Raw(allow_none=True),
                ),
                required=True,
            ),
        ),
        lambda d: ValueMapField(
            d["value_map"]["from"],
            {str(k): v for k, v in d["value_map"]["map"].items()},
            d["value_map"].get("default", MISSING),
        ),
    ),
    "user": (
        strict_schema(
            "UserSpec",
            user=fields.Nested(
                strict_schema(
                    "User",
                    **{"from": _path(required=True)},
                    from_system=_system(),
                    to_system=_system(),
                    default=fields.Raw(allow_none=True),
                ),
                required=True,
            ),
        ),
        lambda d: UserField(
            d["user"]["from"],
            str(d["user"]["from_system"]),
            str(d["user"]["to_system"]),
            d["user"].get("default", MISSING),
        ),
    ),
    "extract": (
        strict_schema(
            "ExtractSpec",
            extract=fields.Nested(
                strict_schema(
                    "Extract",
                    **{"from": _path(required=True)},
                    regex=_RegexField(required=True),
                    default=fields.Raw(allow_none=True),
                ),
                required=True,
            ),
        ),
        lambda d: ExtractField(
            d["extract"]["from"], d["extract"]["regex"], d["extract"].get("default", MISSING)
        ),
    ),
}


class MappingSchema(StrictSchema):
    fields_ = MapOf(
        OneOf(lambda: FIELD_SHAPES),
        data_key="fields",
        required=True,
        validate=validate.Length(min=1),
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RecordMapping:
        return RecordMapping(fields=data["fields_"])


# -- rules ---------------------------------------------------------------------------------


def _rule(**kwargs: Any) -> OneOf:
    return OneOf(lambda: RULE_SHAPES, **kwargs)


def _member_of(key: str, path: str) -> Shape:
    """`sender_in: [...]` and friends: In over a fixed field of the message payload."""
    schema = strict_schema(f"{key}Rule", **{key: _Values(fields.Str(), required=True)})
    return schema, lambda d: In(path, d[key])


RULE_SHAPES: dict[str, Shape] = {
    "all": (
        strict_schema(
            "AllRule", all=fields.List(_rule(), required=True, validate=validate.Length(min=1))
        ),
        lambda d: AllOf(tuple(d["all"])),
    ),
    "any": (
        strict_schema(
            "AnyRule", any=fields.List(_rule(), required=True, validate=validate.Length(min=1))
        ),
        lambda d: AnyOf(tuple(d["any"])),
    ),
    "not": (strict_schema("NotRule", **{"not": _rule(required=True)}), lambda d: Not(d["not"])),
    "equals": (
        strict_schema(
            "EqualsRule",
            field=_path(required=True),
            equals=fields.Raw(required=True, allow_none=True),
        ),
        lambda d: Equals(d["field"], d["equals"]),
    ),
    "in": (
        strict_schema("InRule", field=_path(required=True), **{"in": _Values(required=True)}),
        lambda d: In(d["field"], d["in"]),
    ),
    "changed_to": (
        strict_schema(
            "ChangedToRule", field=_path(required=True), changed_to=_Values(required=True)
        ),
        lambda d: ChangedTo(d["field"], d["changed_to"]),
    ),
    "keywords": (
        strict_schema(
            "KeywordsRule",
            field=_path(load_default="text"),
            keywords=_Values(fields.Str(validate=validate.Length(min=1)), required=True),
            case_sensitive=fields.Bool(load_default=False),
        ),
        lambda d: Keywords(d["field"], d["keywords"], d["case_sensitive"]),
    ),
    "regex": (
        strict_schema(
            "RegexRule", field=_path(load_default="text"), regex=_RegexField(required=True)
        ),
        lambda d: Regex(d["field"], d["regex"]),
    ),
    "flag": (
        strict_schema(
            "FlagRule",
            flag=fields.Str(required=True, validate=validate.Length(min=1)),
            field=_path(load_default="flags"),
        ),
        lambda d: Flag(d["flag"], d["field"]),
    ),
    "sender_in": _member_of("sender_in", "sender"),
    "department_in": _member_of("department_in", "department"),
    "group_in": _member_of("group_in", "group"),
}


# -- notify, trigger, endpoints ------------------------------------------------------------


# Kinds whose writes name no recipient, and why.
NO_RECIPIENTS = {
    NotifyKind.UPDATE_CARD: "the card has them",
    NotifyKind.APPROVAL_CENTER: "its tasks go to the mapped approvers",
}


class NotifySchema(StrictSchema):
    when = _rule(load_default=None)  # absent: every record the flow's rules keep
    send = fields.Enum(NotifyKind, by_value=True, required=True)
    to = _path()
    text = _TemplateField()
    once_per = _path()

    @validates_schema(skip_on_field_errors=False)
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, str] = {}
        if data.get("send") in NO_RECIPIENTS and "to" in data:
            errors["to"] = (
                f"expected no recipients for {data['send']} ({NO_RECIPIENTS[data['send']]})"
            )
        elif data.get("send") not in (None, *NO_RECIPIENTS) and "to" not in data:
            errors["to"] = "expected the mapped field holding the recipient user id(s)"
        when = data.get("when")
        if when is not None and uses_previous(when):
            errors["when"] = "expected no changed_to here: once_per already notifies once per state"
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> NotifyRule:
        return NotifyRule(
            when=data.get("when"),
            kind=data["send"],
            to=data.get("to"),
            text=data.get("text"),
            once_per=data.get("once_per"),
        )


class TriggerSchema(StrictSchema):
    interval_s = fields.Integer(strict=True, validate=validate.Range(min=1, max=86_400))
    cron = fields.Str(validate=_cron)
    webhook = fields.Bool(load_default=False)

    @validates_schema
    def _one_schedule(self, data: dict[str, Any], **_: Any) -> None:
        if "interval_s" in data and "cron" in data:
            raise ValidationError("expected exactly one of interval_s and cron")
        if "interval_s" not in data and "cron" not in data and not data.get("webhook"):
            raise ValidationError(
                "expected exactly one of interval_s and cron (or webhook: true alone)"
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Trigger:
        return Trigger(data.get("interval_s"), data.get("cron"), data["webhook"])


class ResyncSchema(StrictSchema):
    quota_share = fields.Float(
        load_default=ResyncConfig.quota_share,
        validate=validate.Range(
            min=0, max=1, min_inclusive=False, error="expected a share above 0 and at most 1"
        ),
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ResyncConfig:
        return ResyncConfig(**data)


class ReconcileSchema(StrictSchema):
    schedule = fields.Str(load_default=NIGHTLY, allow_none=True, validate=_cron)
    repair = fields.Bool(load_default=False)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ReconcileConfig:
        return ReconcileConfig(**data)


class EndpointSchema(StrictSchema):
    connector = fields.Str(required=True, validate=validate.Length(min=1))
    stream = fields.Str(required=True, validate=validate.Length(min=1))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Endpoint:
        return Endpoint(**data)


# -- the flow ------------------------------------------------------------------------------


class FlowSchema(StrictSchema):
    name = fields.Str(
        required=True,
        validate=validate.Regexp(r"[a-z][a-z0-9_]*\Z", error="expected lower_snake_case"),
    )
    description = fields.Str(load_default="")
    enabled = fields.Bool(load_default=True)
    source = fields.Nested(EndpointSchema, required=True)
    target = fields.Nested(EndpointSchema, required=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    mode = fields.Enum(Mode, by_value=True, load_default=Mode.INCREMENTAL)
    cursor_field = _path(load_default=None)
    lookback_s = fields.Integer(strict=True, load_default=300, validate=validate.Range(min=0))
    page_size = fields.Integer(
        strict=True, load_default=100, validate=validate.Range(min=1, max=1000)
    )
    mapping = fields.Nested(MappingSchema, required=True)
    rules = _rule(load_default=None)
    dedupe_key = _DedupeKeyField(load_default=BY_SOURCE_ID)
    notify = fields.List(fields.Nested(NotifySchema), load_default=list)
    resync = fields.Nested(ResyncSchema, load_default=ResyncConfig)
    reconcile = fields.Nested(ReconcileSchema, load_default=None)
    # Written out so that they are refused with their reason, not as unknown keys.
    two_way = fields.Bool(load_default=False)
    conflict = fields.Raw(load_default=None)
    ownership = fields.Raw(load_default=None)

    @validates_schema(skip_on_field_errors=False)
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, Any] = {}
        if data.get("mode") is Mode.INCREMENTAL and not data.get("cursor_field", "x"):
            errors["cursor_field"] = "expected a field name when mode is incremental"
        for key in TWO_WAY_KEYS:
            if data.get(key) not in (None, False):
                errors[key] = TWO_WAY_NOT_IMPLEMENTED
        mapping = data.get("mapping")
        if isinstance(mapping, RecordMapping):
            errors.update(_unmapped_names(data, set(mapping.fields)))
            errors.update(_message_gaps(data.get("source"), mapping))
        _merge(errors, _kinds_for_target(data))
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Flow:
        kept = {k: v for k, v in data.items() if k not in TWO_WAY_KEYS}
        return Flow(**{**kept, "notify": tuple(data["notify"])})


TWO_WAY_KEYS = ("two_way", "conflict", "ownership")
TWO_WAY_NOT_IMPLEMENTED = (
    "not implemented yet: flows sync one way; remove it (two-way sync, with its conflict "
    "policy and field ownership, is not wired into the pipeline)"
)


def _unmapped_names(data: dict[str, Any], mapped: set[str]) -> dict[str, Any]:
    """Names that must be fields the mapping produces: what a typo there would break."""

    def unknown(names: Any) -> list[str]:
        return [n for n in names if n.split(".")[0] not in mapped]

    errors: dict[str, Any] = {}
    expected = f"expected a mapped field ({', '.join(sorted(mapped))})"
    rules = data.get("rules")
    if isinstance(rules, Rule) and (bad := unknown(paths(rules))):
        errors["rules"] = f"{expected}; got {', '.join(bad)}"
    key = data.get("dedupe_key")
    if isinstance(key, DedupeKey) and (bad := [n for n in unknown(key.names) if n != SOURCE_ID]):
        errors["dedupe_key"] = f"{expected} or source_id; got {', '.join(bad)}"
    for index, rule in enumerate(data.get("notify") or ()):
        if not isinstance(rule, NotifyRule):
            continue
        problems = {
            key: f"{expected}; got {', '.join(bad)}"
            for key, names in (
                ("when", paths(rule.when) if rule.when else []),
                ("to", [rule.to] if rule.to else []),
                ("once_per", [rule.once_per] if rule.once_per else []),
                ("text", rule.text.names if rule.text else []),
            )
            if (bad := unknown(names))
        }
        if problems:
            errors.setdefault("notify", {})[index] = problems
    return errors


def _message_gaps(source: Any, mapping: RecordMapping) -> dict[str, Any]:
    """Fields of a flow over messages that need, without a default, what some messages lack
    (MESSAGE_GAPS): every such message would be a dead letter, so say so at load."""
    if not (isinstance(source, Endpoint) and source.stream == MESSAGE_STREAM):
        return {}
    problems = {}
    for name, spec in mapping.fields.items():
        lacking = [top for path in needs(spec) if (top := path.split(".")[0]) in MESSAGE_GAPS]
        if lacking:
            why = MESSAGE_GAPS[lacking[0]]
            problems[name] = (
                f"expected a default: {why}, and every such message would be a dead letter"
            )
    return {"mapping": {"fields": problems}} if problems else {}


def _kinds_for_target(data: dict[str, Any]) -> dict[str, Any]:
    """A notify kind that writes to a stream of its own (todos, project records) needs the
    flow's target to be that stream, and such a stream takes no other kind."""
    target = data.get("target")
    if not isinstance(target, Endpoint):
        return {}
    errors: dict[int, Any] = {}
    for index, rule in enumerate(data.get("notify") or ()):
        if not isinstance(rule, NotifyRule):
            continue
        stream = STREAM_OF_KIND.get(rule.kind)
        if stream is not None and target.stream != stream:
            errors[index] = {"send": f"expected target.stream {stream} for send: {rule.kind}"}
        elif stream is None and target.stream in STREAM_OF_KIND.values():
            kinds = ", ".join(str(k) for k, s in STREAM_OF_KIND.items() if s == target.stream)
            errors[index] = {"send": f"expected {kinds} for target.stream {target.stream}"}
    return {"notify": errors} if errors else {}


def _merge(errors: dict[str, Any], more: dict[str, Any]) -> None:
    """Nested problems of one key (notify.<index>.<key>) from two checks, kept together."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(errors.get(key), dict):
            for index, problems in value.items():
                errors[key].setdefault(index, {}).update(problems)
        else:
            errors[key] = value
