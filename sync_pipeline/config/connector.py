"""Connector instances (`config/connectors.yaml`): which vendor, where, with which secrets.

The file names environment variables or files that hold secrets, never the secrets. They are
resolved at load time into `Secret`s, whose str and repr are masked, so a config object can be
logged, printed or put in an exception without leaking anything.

An IM or OA connector may also have a `webhook:` section: the secrets its callbacks are signed
or encrypted with, and the timestamp window. Those stay references here and only the webhook
service resolves them (sync_pipeline/webhooks), so workers never need the callback secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from sync_pipeline.config import MapOf, StrictSchema
from sync_pipeline.config.declarative import RestSpec
from sync_pipeline.config.options import ConnectorOptions, is_reference


class Vendor(StrEnum):
    OA = "oa"
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    AGORA = "agora"
    REST = "rest"  # declarative: described in YAML alone (config/declarative.py)
    MATRIX = "matrix"
    SLACK = "slack"


# What each vendor's connector cannot work without (platform-apis.md, per vendor).
REQUIRED_CREDENTIALS: Mapping[Vendor, tuple[str, ...]] = {
    Vendor.OA: ("appid", "secret", "spk"),  # E9: regist's answer, kept from the first run
    Vendor.WECOM: ("corpid", "corpsecret"),
    Vendor.DINGTALK: ("app_key", "app_secret"),
    Vendor.FEISHU: ("app_id", "app_secret"),
    Vendor.AGORA: ("app_id", "app_certificate"),  # app tokens are built locally
    Vendor.REST: (),  # its description names the credentials it reads (checked at load)
    Vendor.MATRIX: ("access_token",),  # the bot user's
    Vendor.SLACK: ("bot_token",),  # xoxb-, without token rotation
}
# The secrets each vendor's callbacks need (platform-apis.md §1.2, §2.2, §3.2, §6, §7.1).
WEBHOOK_SECRETS: Mapping[Vendor, tuple[str, ...]] = {
    Vendor.OA: ("secret",),  # X-OA-Signature: HMAC-SHA256 over ts + "." + body
    Vendor.WECOM: ("token", "encoding_aes_key", "receive_id"),  # receive_id: the corpid
    Vendor.DINGTALK: ("token", "aes_key", "owner_key"),  # owner_key: appKey, corpId or suiteKey
    Vendor.FEISHU: ("verification_token", "encrypt_key"),
    Vendor.AGORA: ("secret",),  # the callback rule's secret
    Vendor.REST: (),  # its description's `webhook.secret` names it (checked by the loader)
    Vendor.SLACK: ("signing_secret",),  # v0: HMAC-SHA256 over "v0:" + ts + ":" + body
}
DEFAULT_WEBHOOK_WINDOW_S = 300.0
ENV_NAME = r"[A-Z_][A-Z0-9_]*"


@dataclass(frozen=True, repr=False)
class Secret:
    """A credential value; prints as *** everywhere. Call `reveal()` only where it is sent."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True)
class RateLimit:
    count: int
    per_s: float


@dataclass(frozen=True)
class CredentialRef:
    """Where a secret lives: an environment variable's name or a file's path."""

    env: str | None
    file: str | None


@dataclass(frozen=True)
class WebhookConfig:
    """Where the callback secrets live (resolved by the webhook service only) and how far from
    now a signed timestamp may be. Every vendor signs one: Agora inside the body's `security`
    (md5 of callId, secret and timestamp), the others in headers or the query."""

    secrets: Mapping[str, CredentialRef]
    window_s: float


class EventsMode(StrEnum):
    """How a connector receives events without a public URL (sync_pipeline/webhooks/longconn)."""

    STREAM = "stream"  # DingTalk's Stream mode
    LONG_CONNECTION = "long_connection"  # Feishu / Lark's long connection


# What each vendor can receive without a public URL.
EVENTS_MODES: Mapping[Vendor, EventsMode] = {
    Vendor.DINGTALK: EventsMode.STREAM,
    Vendor.FEISHU: EventsMode.LONG_CONNECTION,
}
# DingTalk's ping interval is unpublished (its SDK pings every 60 s); Feishu's client pings
# every PingInterval (120 s by default) and is ponged: a third of this is sooner.
DEFAULT_SILENCE_S = 90.0


@dataclass(frozen=True)
class EventsConfig:
    """`events:` of a connector: receive its events over a connection it opens (no public URL);
    `silence_s`: how long a socket may bring no frame, not even a ping, before it is dead."""

    mode: EventsMode
    silence_s: float = DEFAULT_SILENCE_S


@dataclass(frozen=True)
class BreakerConfig:
    """The connector's circuit breaker (http/breaker.py): it opens after `failures`
    consecutive failed calls of the app, seen by any worker, and lets one call through to
    probe the vendor `reset_s` later. Calls fail fast while it is open (`vendor_down` alerts
    watch it)."""

    failures: int = 5
    reset_s: float = 30.0


@dataclass(frozen=True)
class ConnectorConfig:
    name: str
    vendor: Vendor
    base_url: str
    credentials: Mapping[str, Secret]
    rate_limits: Mapping[str, tuple[RateLimit, ...]]  # api -> every window that applies
    monthly_quota: Mapping[str, int]  # api -> calls per calendar month
    timeout_s: float
    # The vendor's options, as its connector's OPTIONS schema loaded them (config/options.py);
    # None when not resolved.
    options: ConnectorOptions | None
    webhook: WebhookConfig | None = None  # None: this connector receives no callbacks
    breaker: BreakerConfig = BreakerConfig()
    events: EventsConfig | None = None  # None: no `syncctl events connect` for it
    # False: loaded without the environment (load_config(environment=False)): no secrets and
    # no options (checked as written), base_url as written. Such a config describes; it
    # cannot make a connector.
    resolved: bool = True
    # vendor rest only: the connector's description (`declarative:`), loaded by the loader.
    declarative: RestSpec | None = None

    @property
    def system(self) -> str:
        """The name its users are known by in flows' user mappings, the directory and effect
        keys: the vendor's, or a rest connector's `system` (default: the connector's name)."""
        if self.vendor is Vendor.REST:
            return (self.declarative.system if self.declarative else None) or self.name
        return self.vendor.value


class CredentialRefSchema(StrictSchema):
    env = fields.Str(validate=validate.Regexp(ENV_NAME, error="expected an env var NAME"))
    file = fields.Str(validate=validate.Length(min=1))

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        if ("env" in data) == ("file" in data):
            raise ValidationError("expected exactly one of env: VAR_NAME or file: path")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> CredentialRef:
        return CredentialRef(env=data.get("env"), file=data.get("file"))


class _CredentialRefField(fields.Field[CredentialRef]):
    """Refuses a bare value with a message that says why (it may be a pasted secret)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> CredentialRef:
        if not isinstance(value, Mapping):
            raise ValidationError("expected {env: VAR_NAME} or {file: path}, never the secret")
        ref: CredentialRef = CredentialRefSchema().load(value)
        return ref


_RATE_WINDOW = fields.Tuple(
    (
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        fields.Float(validate=validate.Range(min=0, min_inclusive=False)),
    )
)


class WebhookSchema(StrictSchema):
    """`webhook:` of a connector: secret references by name, and `window_s`. Which names a
    vendor needs is checked by ConnectorSchema, which knows the vendor."""

    window_s = fields.Float(validate=validate.Range(min=1, max=3600))
    secret = _CredentialRefField()
    token = _CredentialRefField()
    encoding_aes_key = _CredentialRefField()
    receive_id = _CredentialRefField()
    aes_key = _CredentialRefField()
    owner_key = _CredentialRefField()
    verification_token = _CredentialRefField()
    encrypt_key = _CredentialRefField()
    signing_secret = _CredentialRefField()


class BreakerSchema(StrictSchema):
    """`breaker:` of a connector; either key may be left out."""

    failures = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    reset_s = fields.Float(validate=validate.Range(min=1, max=3600))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> BreakerConfig:
        return BreakerConfig(**data)


class EventsSchema(StrictSchema):
    mode = fields.Str(required=True)
    silence_s = fields.Float(
        load_default=DEFAULT_SILENCE_S, validate=validate.Range(min=1, max=3600)
    )


class ConnectorSchema(StrictSchema):
    vendor = fields.Enum(Vendor, by_value=True, required=True)
    base_url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    credentials = MapOf(_CredentialRefField(), required=True)
    rate_limits = MapOf(
        fields.List(_RATE_WINDOW, validate=validate.Length(min=1)), load_default=dict
    )
    monthly_quota = MapOf(
        fields.Integer(strict=True, validate=validate.Range(min=1)), load_default=dict
    )
    timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=300))
    # As written: which names a vendor takes, and their types, its connector declares
    # (config/options.py), which the loader reads through the registry.
    options = fields.Dict(keys=fields.Str(), load_default=dict)
    webhook = fields.Nested(WebhookSchema, load_default=None)
    breaker = fields.Nested(BreakerSchema, load_default=BreakerConfig)
    # vendor rest: the description, inline or {file: path}; the loader reads and checks it.
    declarative = fields.Raw(load_default=None)
    events = fields.Nested(EventsSchema, load_default=None)

    @validates_schema(skip_on_field_errors=False)
    def _vendor_needs(self, data: dict[str, Any], **_: Any) -> None:
        vendor = data.get("vendor")
        if vendor is None:
            return
        errors: dict[str, list[str]] = {}
        given = data.get("credentials")
        needed = REQUIRED_CREDENTIALS[vendor]
        absent = [name for name in needed if given is not None and name not in given]
        if absent:
            errors["credentials"] = [f"expected {', '.join(absent)} for a {vendor} connector"]
        webhook = data.get("webhook")
        if vendor is Vendor.REST:
            # Its webhook's secret is named by its description: the loader checks it.
            if not isinstance(data.get("declarative"), Mapping):
                errors["declarative"] = ["expected the connector's description (or {file: path})"]
        elif data.get("declarative") is not None:
            errors["declarative"] = ["expected only on a connector of vendor rest"]
        elif webhook is not None:
            errors.update(_webhook_problems(vendor, webhook))
        events = data.get("events")
        if events is not None:
            errors.update(_events_problems(vendor, events))
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build_webhook(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        events = data.get("events")
        if events is not None:
            mode = EventsMode(events["mode"])
            data = {**data, "events": EventsConfig(mode, float(events["silence_s"]))}
        written = data.get("webhook")
        if written is None:
            return data
        window = float(written.get("window_s", DEFAULT_WEBHOOK_WINDOW_S))
        secrets = {k: v for k, v in written.items() if k != "window_s"}
        return {**data, "webhook": WebhookConfig(secrets, window)}


def _events_problems(vendor: Vendor, events: Mapping[str, Any]) -> dict[str, list[str]]:
    """Whether the vendor's no-public-URL mode is the one asked for, and built."""
    mode = events.get("mode")
    built = EVENTS_MODES.get(vendor)
    if built is not None and mode == built.value:
        return {}
    expected = f"mode: {built.value}" if built is not None else "no events section"
    return {"events": [f"expected {expected} for a {vendor} connector, not mode: {mode}"]}


def _webhook_problems(vendor: Vendor, webhook: Mapping[str, Any]) -> dict[str, list[str]]:
    """What a vendor's `webhook:` section lacks or has that the vendor does not use."""
    if vendor not in WEBHOOK_SECRETS:  # Matrix calls no one back: Beat reads it with /sync
        return {"webhook": [f"expected no webhook for {vendor}: it has no callbacks"]}
    needed = WEBHOOK_SECRETS[vendor]
    given = set(webhook) - {"window_s"}
    problems: list[str] = []
    absent = [name for name in needed if name not in given]
    if absent:
        problems.append(f"expected {', '.join(absent)} for a {vendor} webhook")
    foreign = sorted(given - set(needed))
    if foreign:
        known = ", ".join(needed)
        problems.append(f"expected only {known} for a {vendor} webhook, not {', '.join(foreign)}")
    return {"webhook": problems} if problems else {}


def resolve_credentials(
    refs: Mapping[str, CredentialRef], env: Mapping[str, str], base_dir: Path
) -> tuple[dict[str, Secret], list[tuple[str, str]]]:
    """Read each secret; problems are (key under credentials, what was expected)."""
    secrets: dict[str, Secret] = {}
    problems: list[tuple[str, str]] = []
    for name, ref in refs.items():
        value, problem = _read_ref(ref, env, base_dir)
        if problem:
            problems.append((name, problem))
        else:
            secrets[name] = Secret(value)
    return secrets, problems


def resolve_options(
    options: Mapping[str, Any], env: Mapping[str, str], base_dir: Path
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Options are plain values, or `{env: NAME}` / `{file: path}` for values that differ per
    environment without being secret (a sandbox's generated DingTalk agent id). Their types
    are checked after, by the connector's OPTIONS schema (config/options.py)."""
    resolved: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in options.items():
        if not is_reference(value):
            resolved[name] = value
            continue
        ref = CredentialRef(env=value.get("env"), file=value.get("file"))
        resolved[name], problem = _read_ref(ref, env, base_dir)
        if problem:
            problems.append((name, problem))
    return resolved, problems


def _read_ref(ref: CredentialRef, env: Mapping[str, str], base_dir: Path) -> tuple[str, str]:
    """(value, "") or ("", what was expected)."""
    if ref.env is not None:
        value = env.get(ref.env, "")
        return (value, "") if value else ("", f"expected environment variable {ref.env} to be set")
    path = base_dir / (ref.file or "")
    try:
        return path.read_text("utf-8").strip(), ""
    except OSError as exc:
        return "", f"expected a readable file at {path} ({exc.strerror})"
