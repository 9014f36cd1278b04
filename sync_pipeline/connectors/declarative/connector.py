"""The declarative REST connector (`vendor: rest`): runs a description (config/declarative.py).

Reads: one request per page, the window's bounds and the paging values placed where the
description says, records picked by the JSONPath selector, filtered, mapped to the payload.
The page token is ours (JSON): the slice of the window being read (a window longer than
`max_window_s` is read slice by slice), the paginator's position, a digest of the last page
(a page just like the one before it is an API ignoring our paging: errors.PagingLoop), and
for a child stream the parent's page and the parent record being read, so children are read
for every record of every parent page (an incremental child's pages but the last carry the
window's start as their cursor: children of later parents may be older). A record whose
cursor is missing, does not parse in the declared format, or lies outside the window asked
for, means the cursor is mis-declared: the read is refused with a ConfigError naming the
key, never a cursor moved on a guess.

Writes: create (op create), update (op update, `target_id` in the templates), and actions
(a decision's "approve"/"reject", or the notification's kind), each with a templated JSON or
form body and, where the API has one, our effect key's handle as its idempotency key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from requests.utils import parse_header_links

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.declarative import (
    ErrorAction,
    ErrorRule,
    ErrorsSpec,
    HydrateSpec,
    IncrementalSpec,
    PaginatorType,
    Path,
    ReadSpec,
    RequestSpec,
    RestSpec,
    StreamSpec,
    Template,
    WriteSpec,
    extract,
    one_of,
)
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema
from sync_pipeline.connectors.base import (
    ConnectorContext,
    Decision,
    DirectoryUser,
    StreamCapabilities,
    build_client,
)
from sync_pipeline.connectors.declarative.auth import Authenticator, digest_of
from sync_pipeline.connectors.registry import declared_streams
from sync_pipeline.errors import (
    ConfigError,
    PagingLoop,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import TokenProvider
from sync_pipeline.http.client import BARE
from sync_pipeline.records import (
    Page,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    WriteResult,
    WriteStatus,
    content_hash,
    iso_utc,
    parse_iso_utc,
)

log = logging.getLogger(__name__)
VENDOR = "rest"


@dataclass(frozen=True)
class RestOptions(ConnectorOptions):
    """A rest connector reads no `options:`: everything is in its description."""


class RestOptionsSchema(OptionsSchema):
    BUILDS = RestOptions


def classifier(name: str, errors: ErrorsSpec, tokens: bool = True) -> Any:
    """`classify` of the description's error mapping: its rules in order, then the defaults
    (429 rate limited with Retry-After, 401 token expired where a token is fetched, else
    refused; 5xx retry, other 4xx reject), then `success_path`'s check of a 2xx answer."""

    def code_of(rule: ErrorRule | None, body: Mapping[str, Any], status: int) -> str:
        path = (rule.code if rule else None) or errors.code
        found = path.first(body) if path else None
        return str(found) if found not in (None, "") else f"http_{status}"

    def message_of(rule: ErrorRule | None, body: Mapping[str, Any]) -> str:
        path = (rule.message if rule else None) or errors.message
        found = path.first(body) if path else None
        return "" if found is None else str(found)[:200]

    def matches(rule: ErrorRule, status: int, body: Mapping[str, Any]) -> bool:
        if rule.status and status not in rule.status:
            return False
        if rule.path is None:
            return True
        value = rule.path.first(body)
        if value is None:
            return False
        if rule.equals:
            return one_of(value, rule.equals)
        return rule.contains in str(value)

    def wait_of(
        rule: ErrorRule | None, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> float | None:
        raw: Any = headers.get(rule.wait_header if rule and rule.wait_header else "Retry-After")
        if rule is not None and rule.wait_path is not None:
            raw = rule.wait_path.first(body)
        try:
            return max(0.0, float(raw)) if raw not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def classify(
        status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        for rule in errors.rules:
            if not matches(rule, status, body):
                continue
            code, text = code_of(rule, body, status), message_of(rule, body)
            action = rule.action
            if action in (ErrorAction.SUCCESS, ErrorAction.IGNORE):
                return None
            if action is ErrorAction.RETRY:
                return VendorUnavailable(name, code, text)
            if action is ErrorAction.RATE_LIMITED:
                return RateLimited(name, code, text, retry_after=wait_of(rule, body, headers))
            if action is ErrorAction.TOKEN_EXPIRED:
                return TokenExpired(name, code, text)
            return VendorRejected(name, code, text)
        if status == 429:
            return RateLimited(name, "http_429", retry_after=wait_of(None, body, headers))
        if status == 401 and tokens:
            return TokenExpired(name, "http_401")
        if status >= 500:
            return VendorUnavailable(name, f"http_{status}")
        if status >= 400:
            return VendorRejected(name, code_of(None, body, status), message_of(None, body))
        if errors.success_path is not None:
            value = errors.success_path.first(body)
            if not one_of(value, errors.success_equals):
                return VendorRejected(name, code_of(None, body, status), message_of(None, body))
        return None

    return classify


@dataclass
class _Position:
    """Where the next page of a read starts (the page token, as JSON)."""

    since: str | None = None  # the slice being read: [since, until)
    until: str | None = None
    at: Any = None  # the paginator's position: page number, offset, cursor, next URL
    seen: str = ""  # the digest of the page before, to spot a page served twice
    parent_at: str | None = None  # child streams: the parent page's token (None: the first)
    parent_index: int = 0  # ...and the parent record being read

    def encode(self) -> str:
        return json.dumps(
            [self.since, self.until, self.at, self.seen, self.parent_at, self.parent_index]
        )

    @classmethod
    def decode(cls, name: str, token: str) -> _Position:
        try:
            return cls(*json.loads(token))
        except (ValueError, TypeError):
            raise VendorRejected(name, "bad_page_token", "not a token of this connector") from None


class DeclarativeConnector:
    """A REST API as its description says (`declarative:` of a connector of vendor rest)."""

    vendor = VENDOR
    STREAMS: Mapping[str, StreamCapabilities] = MappingProxyType({})  # per instance, below
    OPTIONS = RestOptionsSchema

    def __new__(cls, config: ConnectorConfig, ctx: ConnectorContext) -> DeclarativeConnector:
        """The class its description calls for: the pipeline asks `isinstance(connector,
        ReadsOne)` and `DecidesApprovals`, so only a connector with a stream that declares
        `read_one` has that method, and only one with `decide:` can decide."""
        spec = config.declarative
        streams = spec.streams.values() if spec is not None else ()
        kind: type[DeclarativeConnector] = cls
        if cls is DeclarativeConnector and any(s.decide for s in streams):
            kind = DecidingDeclarativeConnector
        elif cls is DeclarativeConnector and any(s.read_one for s in streams):
            kind = RereadingDeclarativeConnector
        made: DeclarativeConnector = super().__new__(kind)
        return made

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        if config.declarative is None:
            raise ConfigError(
                "connectors.yaml", [(f"{config.name}.declarative", "expected the description")]
            )
        self.config, self.name = config, config.name
        self.spec: RestSpec = config.declarative
        self.STREAMS = MappingProxyType(dict(declared_streams(self.spec)))
        self.timezone = self.spec.timezone
        self._context: dict[str, Any] = {
            "credentials": {k: v.reveal() for k, v in config.credentials.items()},
            "base_url": config.base_url.rstrip("/"),
        }
        self.auth = Authenticator(
            config, self.spec.auth, self._context, ctx.refresh_tokens, ctx.redis
        )
        self._classify = classifier(VENDOR, self.spec.errors, self.auth.tokens is not None)
        place = self.auth.place if self.auth.tokens is not None else None
        self._place = place
        self.client = build_client(config, ctx, self._classify, self.auth.tokens, app=self.name)
        self.auth.bind(self.client)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        result: SyncError | None = self._classify(status, body, headers)
        return result

    def dedupe_window_s(self, stream: str) -> float | None:
        writes = self._stream(stream).write
        return None if writes is None else writes.dedupe_window_s

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Each `hydrate:` detail call the stream declares, per record (its `when` allowing),
        its fields added to the payload; a stream without any gives the list's records."""
        steps = self._stream(stream).hydrate
        if not steps:
            return list(records)
        hydrated: list[Record] = []
        for record in records:
            payload = dict(record.payload)
            for step in steps:
                context = {**self._context, "record": payload, "source_id": record.source_id}
                payload |= self._looked_up(step, context)
            hydrated.append(replace(record, payload=payload))
        return hydrated

    def _looked_up(self, step: HydrateSpec, context: Mapping[str, Any]) -> dict[str, Any]:
        """A hydrate step's fields (or a write's `before` step's): {} when its `when` says no;
        with `each`, one call per item and each field the list of its non-empty values."""
        if step.when is not None and not step.when.value(context):
            return {}

        def fields_of(extra: Mapping[str, Any]) -> dict[str, Any]:
            scope = {**context, **extra}
            _, body, _ = self._call(step.request, scope, idempotent=True)
            answer = _unbare(body)
            return {
                name: value.first(answer)
                if isinstance(value, Path)
                else value.value({**scope, "answer": answer})
                for name, value in step.fields.items()
            }

        if step.each is None:
            return fields_of({})
        items = step.each.value(context)
        if not isinstance(items, list | tuple):
            items = [] if items in (None, "") else [items]
        found: dict[str, list[Any]] = {name: [] for name in step.fields}
        for item in items:
            for name, value in fields_of({"item": item}).items():
                if value not in (None, "") and not isinstance(value, jinja2.Undefined):
                    found[name].append(value)
        return dict(found)

    def list_users(self) -> list[DirectoryUser]:
        """The records of the `users` stream, every page: fields user_id (else the id),
        employee_no, email, mobile, name."""
        directory = self.spec.directory
        if directory is None:
            return []
        users: list[DirectoryUser] = []
        token: str | None = None
        followed: set[str] = set()
        while True:
            page = self._read_page("directory", directory, ReadWindow(None, None), token, 100)
            for record in page.records:
                p = record.payload

                def text(key: str, p: Mapping[str, Any] = p) -> str | None:
                    value = p.get(key)
                    return None if value in (None, "") else str(value)

                users.append(
                    DirectoryUser(
                        user_id=text("user_id") or record.source_id,
                        employee_no=text("employee_no"),
                        email=text("email"),
                        mobile=text("mobile"),
                        name=text("name"),
                    )
                )
            token = page.next_token
            if token is None:
                return users
            if token in followed:
                raise PagingLoop(VENDOR, "directory")
            followed.add(token)

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        return self._read_page(stream, self._stream(stream), window, page_token, limit)

    def _read_page(
        self, stream: str, spec: StreamSpec, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        if spec.read is None:
            raise ConfigError("flows", [(stream, f"expected a stream {self.name} can read")])
        read = spec.read
        limit = max(1, min(limit, read.paginator.max_page_size))
        position = (
            _Position.decode(VENDOR, page_token)
            if page_token
            else self._first_position(read, window)
        )
        calls = 0
        while True:  # past empty slices and parents without children, at once
            if read.parent is not None:
                rows, following, spent = self._child_step(stream, spec, position, limit)
            else:
                rows, following, spent = self._step(stream, spec, position, limit, {})
            calls += spent
            if rows or following is None:
                break
            position = following
        inc = read.incremental
        if read.parent is not None and inc is not None and following is not None:
            floor = self._first_position(read, window).since or inc.start  # lookback included
            # Children are read parent by parent, each in cursor order, so a later parent's
            # records may be older than an earlier one's: until the last page, a page commits
            # no further than the window's start, and a read cut short is read again from there.
            rows = [replace(row, cursor_value=floor) for row in rows]
        return Page(tuple(rows), following.encode() if following else None, calls=calls)

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        writes = self._stream(stream).write
        if writes is None:
            raise VendorRejected(VENDOR, "unsupported_stream", f"stream {stream} is not written")
        note = request.notification
        action = str(note.content.get("decision") or note.kind.value)
        end: WriteSpec | None
        if action in writes.actions:
            end = writes.actions[action]
        elif request.op is WriteOp.UPDATE and request.target_id and writes.update is not None:
            end = writes.update
        else:
            end = writes.create
        if end is None:
            return WriteResult(
                request.effect_key, WriteStatus.REJECTED, reason=f"no write declared for {action}"
            )
        context = {
            **self._context,
            "effect_key": request.effect_key,
            "source_id": request.source_id,
            "target_id": request.target_id,
            "op": request.op.value,
            "kind": note.kind.value,
            "to": note.to,
            "content": dict(note.content),
        }
        context["found"] = self._found(end, context)
        headers: dict[str, str] = {}
        if end.idempotency is not None and end.idempotency_header:
            headers[end.idempotency_header] = end.idempotency.render(context)
        handle = end.idempotency is not None and writes.dedupe_window_s is not None
        try:
            _, body, _ = self._call(end.request, context, idempotent=handle, headers=headers)
        except VendorRejected as exc:
            return WriteResult(request.effect_key, WriteStatus.REJECTED, reason=str(exc))
        answer = _unbare(body)
        if end.ok_path is not None and not one_of(end.ok_path.first(answer), end.ok_equals):
            said = end.message_path.first(answer) if end.message_path is not None else None
            reason = f"{self.name} refused it: {str(said or '')[:200]}"
            return WriteResult(request.effect_key, WriteStatus.REJECTED, reason=reason)
        made = end.id.first(answer) if end.id is not None else None
        target = str(made) if made not in (None, "") else request.target_id or request.source_id
        return WriteResult(request.effect_key, WriteStatus.DONE, target)

    def _found(self, end: WriteSpec, context: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of an endpoint's `before` look-ups, in order (each sees the earlier ones
        under `found`)."""
        found: dict[str, Any] = {}
        for step in end.before:
            found |= self._looked_up(step, {**context, "found": found})
        return found

    # -- reading -------------------------------------------------------------------------------
    def _first_position(self, read: ReadSpec, window: ReadWindow) -> _Position:
        inc = read.incremental
        if inc is None:
            return _Position()
        since = parse_iso_utc(window.since or inc.start) - timedelta(seconds=inc.lookback_s)
        until = parse_iso_utc(window.until) if window.until else datetime.now(UTC)
        return _Position(since=iso_utc(since), until=iso_utc(until))

    def _slice_end(self, inc: IncrementalSpec, position: _Position) -> str | None:
        """The end of the slice from `position.since`: the window's end, or sooner."""
        if position.since is None or position.until is None:
            return position.until
        if inc.max_window_s is None:
            return position.until
        end = parse_iso_utc(position.since) + timedelta(seconds=inc.max_window_s)
        return min(iso_utc(end), position.until)

    def _step(
        self,
        stream: str,
        spec: StreamSpec,
        position: _Position,
        limit: int,
        extra: Mapping[str, Any],
    ) -> tuple[list[Record], _Position | None, int]:
        """One request: the records of the page at `position`, and where the next one is."""
        read = spec.read
        assert read is not None  # noqa: S101 - checked by the caller
        pager, inc = read.paginator, read.incremental
        size = pager.page_size or limit
        slice_end = self._slice_end(inc, position) if inc else None
        context: dict[str, Any] = {**self._context, **extra, "limit": size}
        if inc is not None:
            context["window"] = {
                "since": _format(position.since, inc),
                "until": _format(slice_end, inc),
            }
        placed: dict[str, Any] = {}
        if inc is not None and inc.start_param and position.since:
            placed[inc.start_param] = context["window"]["since"]
        if inc is not None and inc.end_param and slice_end:
            placed[inc.end_param] = context["window"]["until"]
        paging: dict[str, Any] = {}
        kind, at = pager.type, position.at
        if kind is PaginatorType.PAGE_NUMBER:
            paging[pager.page_param] = pager.start if at is None else at
            if pager.size_param:
                paging[pager.size_param] = size
        elif kind is PaginatorType.OFFSET:
            paging[pager.offset_param] = 0 if at is None else at
            paging[pager.limit_param] = size
        elif kind is PaginatorType.CURSOR:
            if at is not None:
                paging[pager.cursor_param] = at
            if pager.size_param:
                paging[pager.size_param] = size
        elif kind in (PaginatorType.LINK_HEADER, PaginatorType.NEXT_URL) and pager.size_param:
            paging[pager.size_param] = size
        context["page"] = paging.get(pager.page_param, pager.start)
        context["offset"] = paging.get(pager.offset_param, 0)
        context["cursor"] = at if kind is PaginatorType.CURSOR else None
        if pager.into == "none":
            paging = {}
        url = at if kind in (PaginatorType.LINK_HEADER, PaginatorType.NEXT_URL) and at else None
        _, body, headers = self._call(
            read.request,
            context,
            idempotent=True,
            into=_merge(pager.into, paging, placed, inc),
            url=url,
        )
        data = _unbare(body)
        raw = [r for r in read.records.all(data) if isinstance(r, Mapping)]
        kept = [r for r in raw if _kept(read, r)]
        records = [self._record(stream, spec, r, position if inc else None, extra) for r in kept]
        seen = digest_of([json.dumps(r, sort_keys=True, default=str) for r in raw])
        if raw and seen == position.seen:
            raise PagingLoop(VENDOR, stream, "page_repeated")
        following = self._next(stream, read, position, raw, data, headers, size, seen)
        more_slices = (
            inc is not None and slice_end and position.until and slice_end < position.until
        )
        if following is None and more_slices:  # the next slice of the window
            following = _Position(
                slice_end, position.until, None, "", position.parent_at, position.parent_index
            )
        return records, following, 1

    def _next(
        self,
        stream: str,
        read: ReadSpec,
        position: _Position,
        raw: list[Mapping[str, Any]],
        data: Any,
        headers: Mapping[str, str],
        size: int,
        seen: str,
    ) -> _Position | None:
        """The position of the next page of this slice, or None when this was its last."""
        pager = read.paginator
        kind, at = pager.type, position.at
        if kind is PaginatorType.NONE or not raw:
            return None
        if pager.has_more_path is not None:
            more = pager.has_more_path.first(data)
            if not more or str(more).lower() in ("false", "0"):
                return None
        if pager.short_page and len(raw) < size:
            return None
        nxt: Any = None
        if kind is PaginatorType.PAGE_NUMBER:
            page = pager.start if at is None else int(at)
            if _past_total(pager.total_path, data, (page - pager.start + 1) * size):
                return None
            nxt = page + 1
        elif kind is PaginatorType.OFFSET:
            offset = (0 if at is None else int(at)) + len(raw)
            if _past_total(pager.total_path, data, offset):
                return None
            nxt = offset
        elif kind is PaginatorType.CURSOR:
            assert pager.cursor_path is not None  # noqa: S101 - the schema requires it
            nxt = pager.cursor_path.first(data)
        elif kind is PaginatorType.NEXT_URL:
            assert pager.next_url_path is not None  # noqa: S101 - the schema requires it
            nxt = pager.next_url_path.first(data)
        elif kind is PaginatorType.LINK_HEADER:
            links = parse_header_links(headers.get("Link", "") or "")
            nxt = next((link.get("url") for link in links if link.get("rel") == "next"), None)
        if nxt in (None, ""):
            return None
        if nxt == at:
            raise PagingLoop(VENDOR, stream)  # the API handed back the token it was given
        return _Position(
            position.since, position.until, nxt, seen, position.parent_at, position.parent_index
        )

    def _child_step(
        self, stream: str, spec: StreamSpec, position: _Position, limit: int
    ) -> tuple[list[Record], _Position | None, int]:
        """A child page: the parent page at `parent_at` read again (same token, same page),
        its record `parent_index` taken, and that parent's children read from `position`."""
        read = spec.read
        assert read is not None  # noqa: S101 - checked by the caller
        assert read.parent is not None  # noqa: S101 - checked by the caller
        parent_name = read.parent.stream
        parent_spec = self._stream(parent_name)
        parent_read = parent_spec.read
        assert parent_read is not None  # noqa: S101 - the schema requires it
        parent_position = (
            _Position.decode(VENDOR, position.parent_at)
            if position.parent_at
            else self._first_position(parent_read, ReadWindow(None, None))
        )
        parents, parent_next, calls = self._step(
            parent_name, parent_spec, parent_position, limit, {}
        )
        if position.parent_index >= len(parents):
            if parent_next is None:
                return [], None, calls
            return [], _Position(parent_at=parent_next.encode()), calls
        parent = parents[position.parent_index]
        key = read.parent.key.first(parent.payload)
        key = parent.source_id if key in (None, "") else key
        extra = {"parent": key, "parent_record": dict(parent.payload)}
        child_position = _Position(position.since, position.until, position.at, position.seen)
        if read.incremental is not None and position.since is None:
            child_position = self._first_position(read, ReadWindow(None, None))
        rows, child_next, spent = self._step(stream, spec, child_position, limit, extra)
        calls += spent
        if child_next is not None:
            child_next.parent_at, child_next.parent_index = (
                position.parent_at,
                position.parent_index,
            )
            return rows, child_next, calls
        return (
            rows,
            _Position(parent_at=position.parent_at, parent_index=position.parent_index + 1),
            calls,
        )

    def _record(
        self,
        stream: str,
        spec: StreamSpec,
        raw: Mapping[str, Any],
        position: _Position | None,
        extra: Mapping[str, Any],
        cursor_field: Path | None = None,
    ) -> Record:
        context = {**self._context, **extra}
        assert spec.id is not None  # noqa: S101 - the schema requires it with read:
        source_id = extract(spec.id, raw, context)
        if source_id in (None, ""):
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.name}.declarative.streams.{stream}.id", "a record has no id there")],
            )
        payload = (
            {name: extract(value, raw, context) for name, value in spec.fields.items()}
            if spec.fields
            else dict(raw)
        )
        read = spec.read
        inc = read.incremental if read else None
        cursor = iso_utc(datetime.now(UTC))
        if inc is not None:
            if cursor_field is not None:  # a record read by id: its time where read_one says
                inc = replace(inc, cursor_field=cursor_field)
            cursor = self._cursor(stream, inc, raw, position)
        if spec.version:
            version = "|".join(str(extract(v, raw, context)) for v in spec.version)
        else:
            version = content_hash(payload)[:32]
        return Record(str(source_id), version, cursor, payload)

    def _cursor(
        self, stream: str, inc: IncrementalSpec, raw: Mapping[str, Any], position: _Position | None
    ) -> str:
        """The record's cursor as ISO UTC; a value that is missing, unparseable in the declared
        format, or outside the window asked for refuses the read (the cursor is mis-declared)."""
        key = f"{self.name}.declarative.streams.{stream}.read.incremental"
        value = inc.cursor_field.first(raw)
        try:
            moment = _parse(value, inc)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                "connectors.yaml",
                [
                    (
                        f"{key}.cursor_field",
                        f"expected a time in format {inc.format} at {inc.cursor_field.source}",
                    )
                ],
            ) from None
        cursor = iso_utc(moment)
        if (
            position is not None
            and position.since
            and position.until
            and (cursor < position.since or cursor > position.until)
        ):
            raise ConfigError(
                "connectors.yaml",
                [
                    (
                        key,
                        "expected records inside the window asked for: the API does not filter "
                        "by the declared start/end parameters, or cursor_field is not that time",
                    )
                ],
            )
        return cursor

    # -- one call ------------------------------------------------------------------------------
    def _call(
        self,
        request: RequestSpec,
        context: Mapping[str, Any],
        *,
        idempotent: bool,
        into: Mapping[str, Mapping[str, Any]] | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        tokens: TokenProvider | None = None,
    ) -> tuple[int, Mapping[str, Any], Mapping[str, str]]:
        into = into or {}
        all_headers = {k: t.render(context) for k, t in self.spec.headers.items()}
        all_headers |= {k: t.render(context) for k, t in request.headers.items()}
        all_headers |= dict(headers or {})
        all_headers |= self.auth.static.headers
        all_headers |= self.auth.acting(context)
        base_url = None
        if url is not None:  # a next page's URL, as the API gave it: only to our own host
            parts, ours = urlsplit(url), urlsplit(self.client.base_url)
            if parts.netloc and (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
                raise VendorRejected(VENDOR, "foreign_next_url", "a next page on another host")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if parts.netloc:
                base_url = f"{parts.scheme}://{parts.netloc}"
            params: dict[str, Any] = {}
        else:
            path = request.path.render(context)
            params = {k: t.value(context) for k, t in request.params.items()}
            params |= dict(into.get("params", {}))
        params |= self.auth.static.params
        body: bytes | None = None
        data: Any = None
        if request.json is not None or into.get("json"):
            tree = _render_json(request.json, context) if request.json is not None else {}
            if isinstance(tree, dict):
                tree |= dict(into.get("json", {}))
            body = json.dumps(tree, ensure_ascii=False).encode()
            all_headers.setdefault("Content-Type", "application/json")
            data = body
        elif request.form is not None or into.get("form"):
            form = {k: t.value(context) for k, t in (request.form or {}).items()}
            form |= dict(into.get("form", {}))
            fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
            data = fields
            body = urlencode(fields).encode()
        query = urlencode(sorted((k, str(v)) for k, v in params.items()))
        all_headers |= self.auth.sign(request.method, path.split("?", 1)[0], query, body or b"")
        return self.client.request(
            request.method,
            path,
            api=request.api or request.path.source,
            idempotent=idempotent,
            params=params,
            data=data,
            headers=all_headers,
            auth=self._place,
            base_url=base_url,
            tokens=tokens,
        )

    def _stream(self, stream: str) -> StreamSpec:
        spec = self.spec.streams.get(stream)
        if spec is None:
            raise ConfigError(
                "flows",
                [(stream, f"expected a stream of {self.name}: {', '.join(self.spec.streams)}")],
            )
        return spec


def _merge(
    where: str, paging: Mapping[str, Any], placed: Mapping[str, Any], inc: IncrementalSpec | None
) -> dict[str, dict[str, Any]]:
    """The paging values under `where`, beside the window's bounds under the cursor's `into`."""
    out: dict[str, dict[str, Any]] = {(inc.into if inc else "params"): dict(placed)}
    out.setdefault(where, {}).update(paging)
    return out


def _unbare(body: Mapping[str, Any]) -> Any:
    """An answer that is a bare JSON array (or number) is that value, at `$`."""
    return body[BARE] if set(body) == {BARE} else body


def _kept(read: ReadSpec, raw: Mapping[str, Any]) -> bool:
    for rule in read.filters:
        value = rule.path.first(raw)
        text = "" if value is None else str(value)
        if rule.equals and text not in rule.equals:
            return False
        if rule.not_in and text in rule.not_in:
            return False
    return True


def _past_total(path: Any, data: Any, read_so_far: int) -> bool:
    if path is None:
        return False
    total = path.first(data)
    try:
        return read_so_far >= int(total)
    except (TypeError, ValueError):
        return False


def _render_json(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.value(context)
    if isinstance(value, Mapping):
        return {k: _render_json(v, context) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_render_json(v, context) for v in value]
    return value


def _format(cursor: str | None, inc: IncrementalSpec) -> str | None:
    """An ISO UTC cursor in the API's format and zone."""
    if cursor is None:
        return None
    moment = parse_iso_utc(cursor).astimezone(inc.timezone)
    if inc.format == "epoch_s":
        return str(int(moment.timestamp()))
    if inc.format == "epoch_ms":
        return str(int(moment.timestamp() * 1000))
    if inc.format == "iso":
        return moment.isoformat()
    return moment.strftime(inc.format)


def _parse(value: Any, inc: IncrementalSpec) -> datetime:
    if value is None or isinstance(value, bool):
        raise ValueError("no cursor value")
    if inc.format in ("epoch_s", "epoch_ms"):
        number = float(value)
        return datetime.fromtimestamp(number / (1000 if inc.format == "epoch_ms" else 1), UTC)
    if inc.format == "iso":
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    else:
        moment = datetime.strptime(str(value).strip(), inc.format)  # noqa: DTZ007 - zone below
    return moment if moment.tzinfo else moment.replace(tzinfo=inc.timezone)


class RereadingDeclarativeConnector(DeclarativeConnector):
    """A rest connector one of whose streams declares `read_one`: it is `ReadsOne`, so a dead
    letter's replay re-reads the record from the source (and webhook events could)."""

    def read_one(self, stream: str, source_id: str) -> Record | None:
        """The record now, by its id, where the stream declares `read_one`; None when gone."""
        spec = self._stream(stream)
        if spec.read_one is None:
            raise VendorRejected(VENDOR, "unsupported", f"stream {stream} has no read_one")
        context = {**self._context, "source_id": source_id}
        try:
            _, body, _ = self._call(spec.read_one.request, context, idempotent=True)
        except VendorRejected as exc:
            if exc.code in spec.read_one.missing:
                return None
            raise
        found = spec.read_one.record.first(_unbare(body))
        if not isinstance(found, Mapping):
            return None
        return self._record(stream, spec, found, None, {}, spec.read_one.cursor_field)


class DecidingDeclarativeConnector(RereadingDeclarativeConnector):
    """A rest connector one of whose streams declares `decide:` (approve and reject): it is
    `DecidesApprovals`, so a press on an IM card decides the approval in the source."""

    def decide(
        self, stream: str, source_id: str, decision: Decision, as_user: str, comment: str
    ) -> None:
        """Approve or reject as `as_user` through the declared endpoint; never resent (a lost
        answer is OutcomeUnknown, and the caller re-reads the approval). A refusal raises
        VendorRejected."""
        end = self._stream(stream).decide.get(decision.value)
        if end is None:
            raise VendorRejected(VENDOR, "unsupported", f"stream {stream} decides nothing")
        context: dict[str, Any] = {
            **self._context,
            "source_id": source_id,
            "as_user": as_user,
            "comment": comment,
            "decision": decision.value,
        }
        context["found"] = self._found(end, context)
        as_user_token = self.auth.tokens_as_user(context)  # auth.as_user: bound to the approver
        _, body, _ = self._call(end.request, context, idempotent=False, tokens=as_user_token)
        answer = _unbare(body)
        if end.ok_path is not None and not one_of(end.ok_path.first(answer), end.ok_equals):
            said = end.message_path.first(answer) if end.message_path is not None else None
            raise VendorRejected(VENDOR, "refused", str(said or "")[:200])
