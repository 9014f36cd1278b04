"""The declarative REST connector's description (`vendor: rest`), checked at load.

A `rest` connector is described in YAML alone, under `declarative:` of its connectors.yaml
entry (or in a file that key names, `declarative: {file: path}`, relative to connectors.yaml).
The vocabulary follows Airbyte's low-code manifests and dlt's `rest_api` source where it fits:
an `auth`enticator, per stream a `read` with a `records` selector (JSONPath), a `paginator`,
an `incremental` cursor and a `parent` stream; `fields` map a vendor record to the pipeline's
canonical payload; `write` declares create, update and action endpoints; `errors` maps
answers to the errors.py hierarchy. docs/connectors.md describes every option.

Values that go on the wire are Jinja2 templates (`"{{ credentials.api_key }}"`), compiled here
so a syntax error is refused at load; paths are JSONPath (jsonpath-ng), parsed here likewise.
Everything is a frozen value; the connector (connectors/declarative/) only runs it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import jinja2.sandbox
from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from sync_pipeline.config import MapOf, StrictSchema
from sync_pipeline.errors import SyncError, TemplateFailed


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _local_time(value: Any, format: str = "%Y-%m-%d %H:%M:%S", tz: str = "UTC") -> str:
    """`{{ content.sent_at | local_time(fmt, "Asia/Shanghai") }}`: an ISO time as the API
    writes times (its format, its zone)."""
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(_zone(tz)).strftime(format)


def _utc(value: Any, format: str = "%Y-%m-%d %H:%M:%S", tz: str = "UTC") -> str | None:
    """`{{ record.createTime | utc(fmt, "Asia/Shanghai") }}`: an API's local time as ISO-8601
    UTC, the pipeline's spelling (None for an empty value). Format `epoch_ms` or `epoch_s`
    reads a number since the epoch (`{{ record.updateDate | utc('epoch_ms') }}`)."""
    if value in (None, ""):
        return None
    if format in ("epoch_ms", "epoch_s"):
        seconds = float(value) / (1000 if format == "epoch_ms" else 1)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    local = datetime.strptime(str(value).strip(), format).replace(tzinfo=_zone(tz))
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_ms(value: Any) -> str:
    """`{{ content.sent_at | epoch_ms }}`: an ISO time as milliseconds since the epoch."""
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return str(int(moment.timestamp() * 1000))


def _from_json(value: Any) -> Any:
    """`{{ (answer.data.app_bussiness_data | from_json).summaryId }}`: a JSON text inside a
    field (Seeyon's start answer double-encodes its ids) as the value it encodes; an empty
    value is None, and a text that is not JSON is refused as the API's fault."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError(f"expected a JSON text, got {value[:40]!r}") from None


# A field the API left out renders as "" (and is falsy, so `content.node or 'todo'` works):
# APIs leave fields out; a credential misspelt is caught at load (RestSpec.credentials).
def _to_dict(rows: Any, key: str, value: str) -> dict[str, Any]:
    """`{{ answer.fields | to_dict('fieldName', 'fieldValue') }}`: a list of name/value
    records as one mapping (an absent list: an empty one)."""
    if not isinstance(rows, list | tuple):
        return {}
    return {
        str(row[key]): row.get(value)
        for row in rows
        if isinstance(row, Mapping) and row.get(key) not in (None, "")
    }


TEMPLATES = jinja2.sandbox.ImmutableSandboxedEnvironment(
    undefined=jinja2.ChainableUndefined, autoescape=False
)
TEMPLATES.filters.update(
    local_time=_local_time, utc=_utc, epoch_ms=_epoch_ms, to_dict=_to_dict, from_json=_from_json
)
TEMPLATES.globals.update(now=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
STREAM_NAME = r"[a-z][a-z0-9_]*"
WHOLE_EXPRESSION = re.compile(r"\{\{((?:(?!\}\}|\{\{).)*)\}\}", re.DOTALL)
CREDENTIAL_USE = re.compile(r"credentials\.([A-Za-z_][A-Za-z0-9_]*)|credentials\[['\"]([^'\"]+)")


# -- leaves: templates, JSONPaths, zones, formats ----------------------------------------------
@dataclass(frozen=True)
class Template:
    """A Jinja2 template as written, compiled once. Rendered to text (`render`)."""

    source: str
    compiled: jinja2.Template = field(compare=False, repr=False)

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            return self.compiled.render(**context)
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - any filter or expression on outside data
            raise self._failed(exc) from None

    def value(self, context: Mapping[str, Any]) -> Any:
        """What the template stands for: a template that is one `{{ expression }}` keeps the
        expression's type (a number, a list: for JSON bodies); any other renders to text.
        A template that fails on the data is TemplateFailed (that record's dead letter)."""
        whole = WHOLE_EXPRESSION.fullmatch(self.source)
        if whole is None:
            return self.render(context)
        try:
            return TEMPLATES.compile_expression(whole.group(1))(**context)
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - any filter or expression on outside data
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> TemplateFailed:
        """The failure, without the values of a template that reads credentials."""
        reason = type(exc).__name__ if self.credentials() else f"{type(exc).__name__}: {exc}"
        source = self.source if len(self.source) <= 120 else self.source[:117] + "..."
        return TemplateFailed(source, reason[:300])

    def credentials(self) -> set[str]:
        """The credential names the template reads, for the check against `credentials:`."""
        return {a or b for a, b in CREDENTIAL_USE.findall(self.source)}


@dataclass(frozen=True)
class Path:
    """A JSONPath as written, parsed once."""

    source: str
    parsed: JSONPath = field(compare=False, repr=False)

    def all(self, data: Any) -> list[Any]:
        return [match.value for match in self.parsed.find(data)]

    def first(self, data: Any) -> Any:
        found = self.parsed.find(data)
        return found[0].value if found else None


def jsonpath(text: str) -> Path:
    """A Path from code (a default), parsed as a written one is."""
    return Path(text, parse_jsonpath(text))


class TemplateField(fields.Field[Template]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Template:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError("expected a text or a {{ template }}")
        text = str(value)
        try:
            return Template(text, TEMPLATES.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            raise ValidationError(f"expected a valid template ({exc.message})") from None


class PathField(fields.Field[Path]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("expected a JSONPath such as $.data.items[*]")
        try:
            return Path(value, parse_jsonpath(value))
        except (JsonPathLexerError, JsonPathParserError, ValueError, AttributeError):
            raise ValidationError("expected a valid JSONPath such as $.data.items[*]") from None


class ZoneField(fields.Field[tzinfo]):
    """An IANA zone name ("Asia/Shanghai"), "UTC" or a fixed offset ("+08:00")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> tzinfo:
        expected = "expected a timezone name or +HH:MM"
        if not isinstance(value, str):
            raise ValidationError(expected)
        try:
            if value[:1] in "+-" and ":" in value:
                hours, minutes = value[1:].split(":", 1)
                offset = timedelta(hours=int(hours), minutes=int(minutes))
                return timezone(offset if value[0] == "+" else -offset)
            return ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValidationError(expected) from None


EPOCH_FORMATS = ("epoch_s", "epoch_ms", "iso")


def _time_format(value: str) -> None:
    """strftime formats must round-trip a moment to the second; or epoch_s, epoch_ms, iso."""
    if value in EPOCH_FORMATS:
        return
    probe = datetime(2026, 3, 2, 9, 30, 15, tzinfo=UTC)
    try:
        back = datetime.strptime(probe.strftime(value), value).replace(tzinfo=UTC)
    except ValueError:
        back = None
    if back != probe:
        raise ValidationError(
            "expected a strftime format that keeps the date and time to the second "
            "(%Y-%m-%d %H:%M:%S), or epoch_s, epoch_ms, iso"
        )


_TEMPLATES = MapOf(TemplateField())

Value = Path | Template  # a field of a record: a JSONPath ("$.a.b") or a template over `record`


class ValueField(fields.Field[Value]):
    """A JSONPath when it starts with `$`, else a template (with `record` in its context)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Value:
        if isinstance(value, str) and value.startswith("$"):
            path: Path = PathField().deserialize(value)
            return path
        template: Template = TemplateField().deserialize(value)
        return template


def same(value: Any, expected: Any) -> bool:
    """JSON equality: a bool is only a bool, a number only a number, a text only a text."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(expected, numbers):
        return value == expected
    return type(value) is type(expected) and value == expected


def one_of(value: Any, expected: tuple[Any, ...]) -> bool:
    return any(same(value, e) for e in expected)


def extract(value: Value, record: Any, context: Mapping[str, Any]) -> Any:
    """A record's value of a field spec: the JSONPath's first match, or the template's value."""
    if isinstance(value, Path):
        return value.first(record)
    return value.value({**context, "record": record})


# -- auth --------------------------------------------------------------------------------------
class AuthType(StrEnum):
    NONE = "none"
    API_KEY = "api_key"
    BEARER = "bearer"
    BASIC = "basic"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"
    OAUTH2_REFRESH_TOKEN = "oauth2_refresh_token"  # noqa: S105 - a name, not a secret
    LOGIN = "login"
    HMAC = "hmac"
    ECOLOGY = "ecology"  # Weaver e-cology's regist/applytoken with RSA: a named built-in


class Placement(StrEnum):
    HEADER = "header"
    QUERY = "query"


@dataclass(frozen=True)
class TokenUse:
    """Where a fetched token goes: a header (with a prefix) or a query parameter."""

    placement: Placement = Placement.HEADER
    name: str = "Authorization"
    prefix: str = "Bearer "


@dataclass(frozen=True)
class AuthSpec:
    type: AuthType
    # api_key: `value` in header/query `name`; bearer: `token`; basic: username, password
    value: Template | None = None
    name: str = ""
    placement: Placement = Placement.HEADER
    token: Template | None = None
    username: Template | None = None
    password: Template | None = None
    # oauth2 / login: where to ask, what to send, where the answer puts token and expiry
    token_url: str = ""
    method: str = "POST"
    client_id: Template | None = None
    client_secret: Template | None = None
    scopes: tuple[str, ...] = ()
    refresh_token: Template | None = None  # the first refresh token, before any rotation
    rotates: bool = True
    body: Mapping[str, Template] = field(default_factory=dict)
    body_format: str = "form"  # form | json
    token_path: Path | None = None
    refresh_token_path: Path | None = None
    expires_in_path: Path | None = None
    ttl_s: float = 3600.0  # when the answer gives no expiry
    use: TokenUse = field(default_factory=TokenUse)
    # login: what the token request adds for a call made as a user (a `decide:` endpoint's),
    # rendered with that endpoint's templates (`as_user`, `found`): one token per user, bound
    # to whoever decides (Seeyon's `loginName`). Empty: every call uses the connector's token.
    as_user: Mapping[str, Template] = field(default_factory=dict)
    # hmac: a signature over `message` with `key`, sent in `header`, with a timestamp header
    key: Template | None = None
    message: Template | None = None
    algorithm: str = "sha256"
    encoding: str = "hex"
    header: str = ""
    timestamp_header: str = ""
    # ecology: the credential names of regist's answer, and the OA user the calls act as
    userid: Template | None = None
    token_ttl_s: int = 1800

    def credentials(self) -> set[str]:
        names: set[str] = set()
        for value in (
            self.value,
            self.token,
            self.username,
            self.password,
            self.client_id,
            self.client_secret,
            self.refresh_token,
            self.key,
            self.message,
            self.userid,
            *self.body.values(),
            *self.as_user.values(),
        ):
            if value is not None:
                names |= value.credentials()
        return names


class TokenUseSchema(StrictSchema):
    placement = fields.Enum(Placement, by_value=True, load_default=Placement.HEADER, data_key="in")
    name = fields.Str(load_default="Authorization", validate=validate.Length(min=1))
    prefix = fields.Str(load_default="Bearer ")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> TokenUse:
        return TokenUse(**data)


NEEDS: Mapping[AuthType, tuple[str, ...]] = {
    AuthType.NONE: (),
    AuthType.API_KEY: ("name", "value"),
    AuthType.BEARER: ("token",),
    AuthType.BASIC: ("username", "password"),
    AuthType.OAUTH2_CLIENT_CREDENTIALS: ("token_url", "client_id", "client_secret"),
    AuthType.OAUTH2_REFRESH_TOKEN: ("token_url", "client_id", "client_secret", "refresh_token"),
    AuthType.LOGIN: ("token_url", "token_path"),
    AuthType.HMAC: ("key", "message", "header"),
    AuthType.ECOLOGY: ("userid",),
}


class AuthSchema(StrictSchema):
    type = fields.Enum(AuthType, by_value=True, required=True)
    value = TemplateField()
    name = fields.Str(validate=validate.Length(min=1))
    placement = fields.Enum(Placement, by_value=True, data_key="in")
    token = TemplateField()
    username = TemplateField()
    password = TemplateField()
    token_url = fields.Str(validate=validate.Length(min=1))
    method = fields.Str(validate=validate.OneOf(["GET", "POST"]))
    client_id = TemplateField()
    client_secret = TemplateField()
    scopes = fields.List(fields.Str())
    refresh_token = TemplateField()
    rotates = fields.Bool()
    body = _TEMPLATES
    as_user = _TEMPLATES
    body_format = fields.Str(validate=validate.OneOf(["form", "json"]))
    token_path = PathField()
    refresh_token_path = PathField()
    expires_in_path = PathField()
    ttl_s = fields.Float(validate=validate.Range(min=10))
    use = fields.Nested(TokenUseSchema)
    key = TemplateField()
    message = TemplateField()
    algorithm = fields.Str(validate=validate.OneOf(["sha1", "sha256", "sha512"]))
    encoding = fields.Str(validate=validate.OneOf(["hex", "base64"]))
    header = fields.Str(validate=validate.Length(min=1))
    timestamp_header = fields.Str()
    userid = TemplateField()
    token_ttl_s = fields.Integer(strict=True, validate=validate.Range(min=301))

    @validates_schema
    def _needs(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("type")
        if kind is None:
            return
        absent = [name for name in NEEDS[kind] if name not in data]
        if absent:
            raise ValidationError(f"expected {', '.join(absent)} for auth type {kind}")
        if data.get("as_user") and kind is not AuthType.LOGIN:
            raise ValidationError(
                {"as_user": ["expected only with auth type login (a token per acting user)"]}
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> AuthSpec:
        if "scopes" in data:
            data["scopes"] = tuple(data["scopes"])
        return AuthSpec(**data)


# -- errors ------------------------------------------------------------------------------------
class ErrorAction(StrEnum):
    SUCCESS = "success"  # not an error after all (an "already exists" answer of a create)
    IGNORE = "ignore"  # the same as success, for reads: nothing to read
    RETRY = "retry"  # VendorUnavailable: retried with backoff
    RATE_LIMITED = "rate_limited"  # RateLimited, with the wait where the answer gives it
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - TokenExpired: refresh the token, retry once
    REJECT = "reject"  # VendorRejected: this request is wrong


@dataclass(frozen=True)
class ErrorRule:
    """When an answer matches (`status` in the list, and/or the body's `path` value in
    `equals`, or `contains` a text), it means `action`; the vendor code is read at `code`."""

    action: ErrorAction
    status: tuple[int, ...] = ()
    path: Path | None = None
    equals: tuple[Any, ...] = ()  # compared as JSON values: "0" is not 0, false is not 0
    contains: str = ""
    code: Path | None = None
    message: Path | None = None
    wait_header: str = ""
    wait_path: Path | None = None


class ErrorRuleSchema(StrictSchema):
    action = fields.Enum(ErrorAction, by_value=True, required=True)
    status = fields.List(fields.Integer(strict=True, validate=validate.Range(min=100, max=599)))
    path = PathField()
    equals = fields.List(fields.Raw())
    contains = fields.Str(validate=validate.Length(min=1))
    code = PathField()
    message = PathField()
    wait_header = fields.Str(validate=validate.Length(min=1))
    wait_path = PathField()

    @validates_schema
    def _matches_something(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("status") and "path" not in data:
            raise ValidationError("expected status: [..] or path: with equals/contains")
        if "path" in data and not (data.get("equals") or data.get("contains")):
            raise ValidationError({"path": ["expected equals: [..] or contains: text with it"]})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ErrorRule:
        data["status"] = tuple(data.get("status", ()))
        data["equals"] = tuple(data.get("equals", ()))
        return ErrorRule(**data)


@dataclass(frozen=True)
class ErrorsSpec:
    """The rules in order (first match wins), then the defaults: 429 rate limited (Retry-After),
    401 token expired, 5xx retry, other 4xx reject. `success` (a body path and its values)
    says what a 2xx answer must hold to be one, for APIs that answer errors with 200."""

    rules: tuple[ErrorRule, ...] = ()
    success_path: Path | None = None
    success_equals: tuple[Any, ...] = ()
    code: Path | None = None
    message: Path | None = None


class ErrorsSchema(StrictSchema):
    rules = fields.List(fields.Nested(ErrorRuleSchema), load_default=list)
    success_path = PathField()
    success_equals = fields.List(fields.Raw())
    code = PathField()
    message = PathField()

    @validates_schema
    def _success(self, data: dict[str, Any], **_: Any) -> None:
        if ("success_path" in data) != bool(data.get("success_equals")):
            raise ValidationError("expected success_path and success_equals together")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ErrorsSpec:
        data["rules"] = tuple(data["rules"])
        data["success_equals"] = tuple(data.get("success_equals", ()))
        return ErrorsSpec(**data)


# -- requests ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestSpec:
    """One HTTP call: method, path (a template), query, headers and a JSON or form body, each
    value a template. `json` may be a whole structure whose texts are templates."""

    path: Template
    method: str = "GET"
    params: Mapping[str, Template] = field(default_factory=dict)
    headers: Mapping[str, Template] = field(default_factory=dict)
    json: Any = None  # a structure of Templates (or None)
    form: Mapping[str, Template] | None = None
    api: str = ""  # the rate-limit and quota bucket (default: the path as written)

    def credentials(self) -> set[str]:
        names = self.path.credentials()
        for template in (
            *self.params.values(),
            *self.headers.values(),
            *(self.form or {}).values(),
        ):
            names |= template.credentials()
        return names | _json_credentials(self.json)


def _json_credentials(value: Any) -> set[str]:
    if isinstance(value, Template):
        return value.credentials()
    if isinstance(value, Mapping):
        return set().union(*(_json_credentials(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(_json_credentials(v) for v in value))
    return set()


class JsonBody(fields.Field[Any]):
    """A JSON body whose texts are templates; numbers, booleans and null stay as written."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return TemplateField().deserialize(value)
        if isinstance(value, Mapping):
            return {str(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return tuple(self._walk(v) for v in value)
        return value


class RequestSchema(StrictSchema):
    path = TemplateField(required=True)
    method = fields.Str(
        load_default="GET", validate=validate.OneOf(["GET", "POST", "PUT", "PATCH", "DELETE"])
    )
    params = _TEMPLATES
    headers = _TEMPLATES
    json = JsonBody()
    form = _TEMPLATES
    api = fields.Str(validate=validate.Length(min=1))

    @validates_schema
    def _one_body(self, data: dict[str, Any], **_: Any) -> None:
        if "json" in data and "form" in data:
            raise ValidationError("expected json: or form:, not both")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RequestSpec:
        return RequestSpec(**data)


# -- pagination and incremental reads ----------------------------------------------------------
class PaginatorType(StrEnum):
    NONE = "none"  # one page
    PAGE_NUMBER = "page_number"
    OFFSET = "offset"
    CURSOR = "cursor"
    LINK_HEADER = "link_header"
    NEXT_URL = "next_url"


@dataclass(frozen=True)
class PaginatorSpec:
    """How the next page is asked for, and when there is none: an empty page always ends a
    read; `has_more` (a path whose false ends it), `total` (a path to the count of records)
    and `short_page` (fewer than asked ends it) may end it sooner. A page token the API hands
    back twice, or a page just like the one before, is errors.PagingLoop, never a loop."""

    type: PaginatorType = PaginatorType.NONE
    page_param: str = "page"
    size_param: str = ""
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    start: int = 1  # the first page's number
    page_size: int | None = None  # fixed size; None: the pipeline's limit
    max_page_size: int = 100
    cursor_path: Path | None = None
    next_url_path: Path | None = None
    has_more_path: Path | None = None
    total_path: Path | None = None
    short_page: bool = False
    # where the paging values go: "params" (query), "json" or "form" (the request's body), or
    # "none": only into the templates, as `page`, `offset`, `cursor` and `limit`
    into: str = "params"


class PaginatorSchema(StrictSchema):
    type = fields.Enum(PaginatorType, by_value=True, required=True)
    page_param = fields.Str(validate=validate.Length(min=1))
    size_param = fields.Str(validate=validate.Length(min=1))
    offset_param = fields.Str(validate=validate.Length(min=1))
    limit_param = fields.Str(validate=validate.Length(min=1))
    cursor_param = fields.Str(validate=validate.Length(min=1))
    start = fields.Integer(strict=True, validate=validate.Range(min=0))
    page_size = fields.Integer(strict=True, validate=validate.Range(min=1, max=10000))
    max_page_size = fields.Integer(strict=True, validate=validate.Range(min=1, max=10000))
    cursor_path = PathField()
    next_url_path = PathField()
    has_more_path = PathField()
    total_path = PathField()
    short_page = fields.Bool()
    into = fields.Str(validate=validate.OneOf(["params", "json", "form", "none"]))

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("type")
        if kind is PaginatorType.CURSOR and "cursor_path" not in data:
            raise ValidationError(
                {"cursor_path": ["expected where the answer gives the next cursor"]}
            )
        if kind is PaginatorType.NEXT_URL and "next_url_path" not in data:
            raise ValidationError(
                {"next_url_path": ["expected where the answer gives the next URL"]}
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> PaginatorSpec:
        return PaginatorSpec(**data)


@dataclass(frozen=True)
class IncrementalSpec:
    """A date-time cursor: the record's `cursor_field` (a JSONPath into the vendor record),
    written in `format` in `timezone`; the window's bounds sent as `start_param` (inclusive)
    and `end_param` (exclusive) in `into`; a window longer than `max_window_s` is read in
    slices; `lookback_s` widens the start of each read (late writes)."""

    cursor_field: Path
    format: str = "iso"
    timezone: tzinfo = UTC
    start_param: str = ""
    end_param: str = ""
    into: str = "params"
    max_window_s: float | None = None
    lookback_s: float = 0.0
    start: str = "2000-01-01T00:00:00Z"  # the first read's start when the window has none


class IncrementalSchema(StrictSchema):
    cursor_field = PathField(required=True)
    format = fields.Str(validate=_time_format)
    timezone = ZoneField()
    start_param = fields.Str(validate=validate.Length(min=1))
    end_param = fields.Str(validate=validate.Length(min=1))
    into = fields.Str(validate=validate.OneOf(["params", "json", "form"]))
    max_window_s = fields.Float(validate=validate.Range(min=1))
    lookback_s = fields.Float(validate=validate.Range(min=0, max=31 * 86400))
    start = fields.Str(validate=validate.Regexp(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> IncrementalSpec:
        return IncrementalSpec(**data)


@dataclass(frozen=True)
class ParentSpec:
    """A child stream reads one request per parent record, for every parent page: the parent's
    value at `key` is in the templates as `parent`."""

    stream: str
    key: Path


class ParentSchema(StrictSchema):
    stream = fields.Str(required=True, validate=validate.Regexp(STREAM_NAME))
    key = PathField(required=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ParentSpec:
        return ParentSpec(**data)


@dataclass(frozen=True)
class FilterSpec:
    """Keep a record only when the value at `path` is in `equals` (or not, with `not_in`)."""

    path: Path
    equals: tuple[str, ...] = ()
    not_in: tuple[str, ...] = ()


class FilterSchema(StrictSchema):
    path = PathField(required=True)
    equals = fields.List(fields.Raw())
    not_in = fields.List(fields.Raw())

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("equals")) == bool(data.get("not_in")):
            raise ValidationError("expected equals: [..] or not_in: [..]")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> FilterSpec:
        return FilterSpec(
            data["path"],
            tuple(str(v) for v in data.get("equals", ())),
            tuple(str(v) for v in data.get("not_in", ())),
        )


@dataclass(frozen=True)
class ReadSpec:
    request: RequestSpec
    records: Path  # the record selector
    paginator: PaginatorSpec = field(default_factory=PaginatorSpec)
    incremental: IncrementalSpec | None = None
    parent: ParentSpec | None = None
    filters: tuple[FilterSpec, ...] = ()


class ReadSchema(RequestSchema):
    records = PathField(required=True)
    paginator = fields.Nested(PaginatorSchema, load_default=PaginatorSpec)
    incremental = fields.Nested(IncrementalSchema, load_default=None)
    parent = fields.Nested(ParentSchema, load_default=None)
    filters = fields.List(fields.Nested(FilterSchema), load_default=list)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ReadSpec:
        own = {k: data.pop(k) for k in ("records", "paginator", "incremental", "parent", "filters")}
        own["filters"] = tuple(own["filters"])
        return ReadSpec(request=RequestSpec(**data), **own)


@dataclass(frozen=True)
class OneSpec:
    """Read one record by id (`source_id` in the templates): what a webhook event needs."""

    request: RequestSpec
    record: Path
    missing: tuple[str, ...] = ("http_404",)  # error codes that mean the record is gone
    # Where the record read by id gives its time, when not at the list's `cursor_field`
    # (in the same format): an API whose detail answer names it otherwise.
    cursor_field: Path | None = None


class OneSchema(RequestSchema):
    record = PathField(required=True)
    missing = fields.List(fields.Str(validate=validate.Length(min=1)))
    cursor_field = PathField()

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> OneSpec:
        record = data.pop("record")
        missing = tuple(data.pop("missing", ("http_404",)))
        cursor_field = data.pop("cursor_field", None)
        return OneSpec(RequestSpec(**data), record, missing, cursor_field)


@dataclass(frozen=True)
class HydrateSpec:
    """A detail call per record the pipeline asks for (only those whose version changed):
    `when` (a template over `record`, the mapped payload) says whether it is made; `fields`
    are read from its `answer` (a JSONPath into it, or a template with `answer` and `record`)
    and added to the payload. With `each` (a template giving a list), the call is made once
    per item (`item` in its templates) and each field is the list of its non-empty values,
    one per item: for an API that answers only per member, per department..."""

    request: RequestSpec
    fields: Mapping[str, Value]
    when: Template | None = None
    each: Template | None = None


class HydrateSchema(RequestSchema):
    when = TemplateField()
    each = TemplateField()
    fields_ = MapOf(ValueField(), data_key="fields", required=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> HydrateSpec:
        fields_, when, each = data.pop("fields_"), data.pop("when", None), data.pop("each", None)
        return HydrateSpec(RequestSpec(**data), fields_, when, each)


# -- writes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteSpec:
    """One write endpoint. `id` reads the made object's id from the answer; `idempotency`
    sends our effect key's handle (a template, usually "{{ effect_key }}") in `idempotency_header`
    or as the body's `idempotency_field`; `dedupe_window_s` says how long the API drops a
    resend carrying it (None: never, so an unknown outcome is never resent)."""

    request: RequestSpec
    id: Path | None = None
    idempotency: Template | None = None
    idempotency_header: str = ""
    # What a 2xx answer must hold for the write to be done (else the record is rejected,
    # with `message_path`'s text): for APIs that answer a refusal with 200.
    ok_path: Path | None = None
    ok_equals: tuple[Any, ...] = ()
    message_path: Path | None = None
    # Reads made first, as hydrate's steps, their fields put under `found` in this endpoint's
    # templates: an id the write needs that only a look-up gives (Seeyon's workitem).
    before: tuple[HydrateSpec, ...] = ()


class WriteEndpointSchema(RequestSchema):
    before = fields.List(fields.Nested(HydrateSchema))
    id = PathField()
    idempotency = TemplateField()
    idempotency_header = fields.Str(validate=validate.Length(min=1))
    ok_path = PathField()
    ok_equals = fields.List(fields.Raw())
    message_path = PathField()

    @validates_schema
    def _ok(self, data: dict[str, Any], **_: Any) -> None:
        if ("ok_path" in data) != bool(data.get("ok_equals")):
            raise ValidationError("expected ok_path and ok_equals together")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WriteSpec:
        names = ("id", "idempotency", "idempotency_header", "ok_path", "message_path")
        own = {k: data.pop(k) for k in names if k in data}
        own["ok_equals"] = tuple(data.pop("ok_equals", ()))
        own["before"] = tuple(data.pop("before", ()))
        return WriteSpec(RequestSpec(**data), **own)


@dataclass(frozen=True)
class WritesSpec:
    create: WriteSpec | None = None
    update: WriteSpec | None = None
    actions: Mapping[str, WriteSpec] = field(default_factory=dict)  # approve, reject, ...
    dedupe_window_s: float | None = None  # math.inf with `upsert: true`


class WritesSchema(StrictSchema):
    create = fields.Nested(WriteEndpointSchema)
    update = fields.Nested(WriteEndpointSchema)
    actions = MapOf(fields.Nested(WriteEndpointSchema))
    dedupe_window_s = fields.Float(validate=validate.Range(min=0))
    # The API keeps one object per key whatever is resent (an upsert): resending is always safe.
    upsert = fields.Bool()

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not ({"create", "update"} & set(data)) and not data.get("actions"):
            raise ValidationError("expected create:, update: or actions:")
        if data.get("upsert") and "dedupe_window_s" in data:
            raise ValidationError("expected upsert: or dedupe_window_s:, not both")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WritesSpec:
        if data.pop("upsert", False):
            data["dedupe_window_s"] = math.inf
        return WritesSpec(**data)


# -- webhooks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookEventSpec:
    """A delivery whose `type_path` value starts with `type_prefix` means a record of
    `stream` changed: its id at `source_id`, the delivery's own id at `event_id` (what
    deduplicates a second delivery), optionally its status and version."""

    stream: str
    event_id: Path
    source_id: Path
    type_path: Path | None = None
    type_prefix: str = ""
    status: Path | None = None
    version: Path | None = None


class WebhookEventSchema(StrictSchema):
    stream = fields.Str(required=True, validate=validate.Regexp(STREAM_NAME))
    event_id = PathField(required=True)
    source_id = PathField(required=True)
    type_path = PathField()
    type_prefix = fields.Str()
    status = PathField()
    version = PathField()

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WebhookEventSpec:
        return WebhookEventSpec(**data)


@dataclass(frozen=True)
class WebhookSpec:
    """How the API signs its change webhook, and what its deliveries mean. The signature is
    HMAC(`secret`, `message`) in `signature_header`, `message` a template over `timestamp`
    (the `timestamp_header` value, Unix seconds, checked against the window) and `body` (the
    raw body); `secret` names the key of the connector's `webhook:` section that holds it."""

    signature_header: str
    timestamp_header: str
    message: Template
    events: tuple[WebhookEventSpec, ...]
    secret: str = "secret"  # noqa: S105 - the name of a key, not a secret
    algorithm: str = "sha256"
    encoding: str = "hex"


class WebhookSpecSchema(StrictSchema):
    signature_header = fields.Str(required=True, validate=validate.Length(min=1))
    timestamp_header = fields.Str(required=True, validate=validate.Length(min=1))
    message = TemplateField(required=True)
    events = fields.List(
        fields.Nested(WebhookEventSchema), required=True, validate=validate.Length(min=1)
    )
    secret = fields.Str(validate=validate.Regexp(r"[a-z][a-z0-9_]*"))
    algorithm = fields.Str(validate=validate.OneOf(["sha1", "sha256", "sha512"]))
    encoding = fields.Str(validate=validate.OneOf(["hex", "base64"]))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WebhookSpec:
        data["events"] = tuple(data["events"])
        return WebhookSpec(**data)


# -- streams and the whole -----------------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    """One stream: how it is read (and re-read by id), how a vendor record maps to the
    pipeline's payload (`fields`: name -> JSONPath; `id` and `version` the same), and how
    it is written."""

    read: ReadSpec | None = None
    read_one: OneSpec | None = None
    hydrate: tuple[HydrateSpec, ...] = ()
    write: WritesSpec | None = None
    # An approval decided as its approver (a press on an IM card): "approve" and "reject"
    # endpoints, with `source_id`, `as_user`, `comment` in their templates. Never resent.
    decide: Mapping[str, WriteSpec] = field(default_factory=dict)
    fields: Mapping[str, Value] = field(default_factory=dict)
    id: Value | None = None
    version: tuple[Value, ...] = ()  # joined with "|"; none: the payload's content hash


class StreamSchema(StrictSchema):
    read = fields.Nested(ReadSchema)
    read_one = fields.Nested(OneSchema)
    hydrate = fields.List(fields.Nested(HydrateSchema))
    write = fields.Nested(WritesSchema)
    decide = MapOf(fields.Nested(WriteEndpointSchema))
    fields_ = MapOf(ValueField(), data_key="fields")
    id = ValueField()
    version = fields.List(ValueField())

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        if "read" not in data and "write" not in data:
            raise ValidationError("expected read: or write: (or both)")
        if "read" in data and "id" not in data:
            raise ValidationError({"id": ["expected the JSONPath of a record's id, to read"]})
        if "read_one" in data and "read" not in data:
            raise ValidationError({"read_one": ["expected read: beside it"]})
        decide = data.get("decide")
        if decide is not None and (set(decide) != {"approve", "reject"} or "read_one" not in data):
            raise ValidationError(
                {"decide": ["expected approve: and reject: (and read_one: beside them)"]}
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> StreamSpec:
        data["fields"] = data.pop("fields_", {})
        data["version"] = tuple(data.get("version", ()))
        data["hydrate"] = tuple(data.get("hydrate", ()))
        return StreamSpec(**data)


@dataclass(frozen=True)
class RestSpec:
    """A whole declarative connector: auth, headers every call sends, error mapping, streams;
    `directory` is read for the directory of users (list_users)."""

    streams: Mapping[str, StreamSpec]
    # The name flows' user mappings (from_system, to_system) and the directory know this
    # system by: "oa" for an OA the shipped flows map users of; default the connector's name.
    system: str | None = None
    auth: AuthSpec = field(default_factory=lambda: AuthSpec(AuthType.NONE))
    headers: Mapping[str, Template] = field(default_factory=dict)
    errors: ErrorsSpec = field(default_factory=ErrorsSpec)
    # the directory (list_users): read like a stream, its fields user_id, employee_no, email,
    # mobile, name; not a stream flows can name
    directory: StreamSpec | None = None
    timezone: tzinfo = UTC  # the source's local time, for times people read
    webhook: WebhookSpec | None = None  # the API's change webhook, if it has one

    def evented(self) -> frozenset[str]:
        """The streams a webhook delivery names a changed record of (each has read_one)."""
        if self.webhook is None:
            return frozenset()
        return frozenset(event.stream for event in self.webhook.events)

    def credentials(self) -> set[str]:
        names = self.auth.credentials()
        for template in self.headers.values():
            names |= template.credentials()
        for stream in self.streams.values():
            requests = [stream.read.request if stream.read else None]
            requests.append(stream.read_one.request if stream.read_one else None)
            requests += [step.request for step in stream.hydrate]
            ends = list(stream.decide.values())
            if stream.write:
                made = [stream.write.create, stream.write.update, *stream.write.actions.values()]
                ends += [end for end in made if end is not None]
            for end in ends:
                requests += [end.request, *(step.request for step in end.before)]
            for request in requests:
                if request is not None:
                    names |= request.credentials()
        return names


class RestSchema(StrictSchema):
    system = fields.Str(validate=validate.Regexp(STREAM_NAME))
    auth = fields.Nested(AuthSchema)
    headers = _TEMPLATES
    errors = fields.Nested(ErrorsSchema)
    streams = MapOf(fields.Nested(StreamSchema), required=True)
    directory = fields.Nested(StreamSchema)
    timezone = ZoneField()
    webhook = fields.Nested(WebhookSpecSchema)

    @validates_schema
    def _streams(self, data: dict[str, Any], **_: Any) -> None:
        streams = data.get("streams")
        if not isinstance(streams, Mapping):
            return
        problems: dict[str, Any] = {}
        bad_names = [n for n in streams if not re.fullmatch(STREAM_NAME, n)]
        if bad_names:
            problems["streams"] = [
                f"expected lower_snake_case stream names, not {', '.join(bad_names)}"
            ]
        for name, stream in streams.items():
            parent = stream.read.parent if stream.read else None
            if parent is not None:
                above = streams.get(parent.stream)
                if above is None or above.read is None or parent.stream == name:
                    problems[f"streams.{name}.read.parent.stream"] = [
                        "expected another readable stream of this connector"
                    ]
                elif above.read.parent is not None:
                    problems[f"streams.{name}.read.parent.stream"] = [
                        "expected a stream without a parent of its own (one level)"
                    ]
        webhook = data.get("webhook")
        for i, event in enumerate(webhook.events if webhook else ()):
            target = streams.get(event.stream)
            if target is None or target.read_one is None:
                problems[f"webhook.events.{i}.stream"] = [
                    "expected a stream of this connector with read_one: (an event re-reads it)"
                ]
        auth = data.get("auth")
        if auth is not None and auth.as_user and not any(s.decide for s in streams.values()):
            problems["auth.as_user"] = [
                "expected a stream with decide: (only a decision is made as a user)"
            ]
        directory = data.get("directory")
        if directory is not None and (directory.read is None or directory.read.parent):
            problems["directory"] = ["expected read: (without a parent)"]
        if problems:
            raise ValidationError(problems)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RestSpec:
        return RestSpec(**data)
