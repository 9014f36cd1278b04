"""Alerts (`config/alerts.yaml`, optional): what to watch, for how long, and whom to tell.

A rule names a `kind` of trouble, its `threshold`, how long it must last (`for_s`) before it
fires, the flows (or vendors) it watches, and the destinations it is sent to: an IM group
(a connector and the group's chat id) and/or a generic webhook signed with a secret read from
an environment variable. Each alert is sent once when it starts firing and once when it
resolves (pipeline/alerts.py). Cross-file checks (connector names, flow names) are in
`loader.py`.

Kinds the evaluator does not build yet are refused here with that reason, never accepted
and ignored (none at present).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from sync_pipeline.config import MapOf, StrictSchema

ALERTS_FILE = "alerts.yaml"
DEFAULT_EVALUATE_EVERY_S = 30
DEFAULT_REFUSAL_WINDOW_S = 300  # webhook_refusals: the window its refusals are counted in
# A group message is posted only by connectors that can post to groups (connectors.base.
# PostsToGroups); the loader checks the destination's connector is one of these vendors.
GROUP_VENDORS = ("wecom", "dingtalk", "feishu", "agora")


class AlertKind(StrEnum):
    CONSECUTIVE_FAILURES = "consecutive_failures"  # a flow's last `threshold` pulls failed
    VENDOR_DOWN = "vendor_down"  # a vendor's circuit breaker is open (or probing)
    DEAD_LETTERS = "dead_letters"  # a flow's open dead letters above `threshold`
    UNKNOWN_EFFECTS = "unknown_effects"  # a flow's effects parked as unknown above `threshold`
    LAG = "lag"  # a flow's oldest read, unsynced change older than `threshold` seconds
    QUOTA = "quota"  # a connector's monthly quota used `threshold` percent or more
    # a flow's newest reconciliation left `threshold` or more objects not in step
    RECONCILIATION_DRIFT = "reconciliation_drift"
    # a connector's webhook refused `threshold` deliveries or more in the last `window_s`
    WEBHOOK_REFUSALS = "webhook_refusals"
    # a connector's no-public-URL event connection (`events:`) is down, silent or not running
    EVENT_CONNECTION = "event_connection"


NOT_BUILT: dict[str, str] = {}
FLOW_KINDS = (
    AlertKind.CONSECUTIVE_FAILURES,
    AlertKind.DEAD_LETTERS,
    AlertKind.UNKNOWN_EFFECTS,
    AlertKind.LAG,
    AlertKind.RECONCILIATION_DRIFT,
)


@dataclass(frozen=True)
class GroupDestination:
    connector: str
    chat_id: str


@dataclass(frozen=True)
class WebhookDestination:
    url: str
    secret_env: str  # the environment variable holding the signing secret (never the secret)


@dataclass(frozen=True)
class Destination:
    name: str
    group: GroupDestination | None = None
    webhook: WebhookDestination | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    kind: AlertKind
    threshold: int
    for_s: int
    notify: tuple[str, ...]
    flows: tuple[str, ...] = ()  # empty: every flow (flow kinds)
    vendors: tuple[str, ...] = ()  # empty: every vendor (vendor_down)
    window_s: int = DEFAULT_REFUSAL_WINDOW_S  # webhook_refusals only


@dataclass(frozen=True)
class AlertsConfig:
    evaluate_every_s: int = DEFAULT_EVALUATE_EVERY_S
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    rules: Mapping[str, Rule] = field(default_factory=dict)

    @property
    def all_rules(self) -> tuple[Rule, ...]:
        return tuple(self.rules.values())

    def destination(self, name: str) -> Destination:
        return self.destinations[name]


NO_ALERTS = AlertsConfig()


class _GroupSchema(StrictSchema):
    connector = fields.Str(required=True, validate=validate.Length(min=1))
    chat_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> GroupDestination:
        return GroupDestination(**data)


class _WebhookSchema(StrictSchema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    secret_env = fields.Str(
        required=True,
        validate=validate.Regexp(r"[A-Z_][A-Z0-9_]*\Z", error="expected an environment variable"),
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WebhookDestination:
        return WebhookDestination(**data)


class _DestinationSchema(StrictSchema):
    group = fields.Nested(_GroupSchema)
    webhook = fields.Nested(_WebhookSchema)

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if "group" not in data and "webhook" not in data:
            raise ValidationError("expected group, webhook or both")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return data


class _Kind(fields.Str):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> AlertKind:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text in NOT_BUILT:
            raise ValidationError(NOT_BUILT[text])
        if text not in tuple(AlertKind):
            raise ValidationError(f"expected one of: {', '.join(AlertKind)}")
        return AlertKind(text)


class _RuleSchema(StrictSchema):
    kind = _Kind(required=True)
    threshold = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1))
    for_s = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    flows = fields.List(fields.Str(validate=validate.Length(min=1)), load_default=list)
    vendors = fields.List(fields.Str(validate=validate.Length(min=1)), load_default=list)
    window_s = fields.Integer(strict=True, validate=validate.Range(min=10, max=86400))
    notify = fields.List(
        fields.Str(validate=validate.Length(min=1)), required=True, validate=validate.Length(min=1)
    )

    @validates_schema
    def _subjects(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("kind")
        if kind is AlertKind.VENDOR_DOWN and data.get("flows"):
            raise ValidationError({"flows": ["expected vendors, not flows, for vendor_down"]})
        if kind in FLOW_KINDS and data.get("vendors"):
            raise ValidationError({"vendors": [f"expected flows, not vendors, for {kind}"]})
        vendor_kinds = (AlertKind.QUOTA, AlertKind.WEBHOOK_REFUSALS, AlertKind.EVENT_CONNECTION)
        if kind in vendor_kinds and data.get("flows"):
            raise ValidationError({"flows": [f"expected vendors, not flows, for {kind}"]})
        if kind is not AlertKind.WEBHOOK_REFUSALS and "window_s" in data:
            raise ValidationError({"window_s": ["expected only for kind webhook_refusals"]})
        if kind is AlertKind.QUOTA and data.get("threshold", 0) > 100:
            raise ValidationError(
                {"threshold": ["expected a percentage of the quota, at most 100"]}
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return data


class AlertsSchema(StrictSchema):
    evaluate_every_s = fields.Integer(
        strict=True,
        load_default=DEFAULT_EVALUATE_EVERY_S,
        validate=validate.Range(min=5, max=3600),
    )
    destinations = MapOf(fields.Nested(_DestinationSchema), load_default=dict)
    rules = MapOf(fields.Nested(_RuleSchema), load_default=dict)

    @validates_schema
    def _named(self, data: dict[str, Any], **_: Any) -> None:
        known = data.get("destinations", {})
        errors: dict[str, Any] = {}
        for name, rule in data.get("rules", {}).items():
            unknown = [d for d in rule.get("notify", ()) if d not in known]
            if unknown:
                names = ", ".join(sorted(known)) or "none"
                errors[name] = {"notify": [f"expected destinations defined above ({names})"]}
        if errors:
            raise ValidationError({"rules": errors})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> AlertsConfig:
        destinations = {
            name: Destination(name, body.get("group"), body.get("webhook"))
            for name, body in data["destinations"].items()
        }
        rules = {
            name: Rule(
                name=name,
                kind=body["kind"],
                threshold=body["threshold"],
                for_s=body["for_s"],
                notify=tuple(body["notify"]),
                flows=tuple(body["flows"]),
                vendors=tuple(body["vendors"]),
                window_s=body.get("window_s", DEFAULT_REFUSAL_WINDOW_S),
            )
            for name, body in data["rules"].items()
        }
        return AlertsConfig(data["evaluate_every_s"], destinations, rules)
