"""The connector seam: read a stream in pages, write a batch idempotently, classify errors.

Connectors know nothing of Celery or PostgreSQL. They talk HTTP through `sync_pipeline.http`
(timeouts, shared token cache, shared rate limits, backoff, circuit breaker, quotas) and turn
vendor JSON into canonical records at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import redis
import requests

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema
from sync_pipeline.errors import SyncError
from sync_pipeline.http import (
    CircuitBreaker,
    Classify,
    HttpClient,
    QuotaBudget,
    QuotaStore,
    RefreshTokenStore,
    TokenProvider,
)
from sync_pipeline.records import (
    EventKind,
    Notification,
    NotifyKind,
    Page,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    WriteResult,
)


@dataclass(frozen=True)
class DirectoryUser:
    """One person as a platform knows them; the directory matches people across platforms by
    employee number, then email, then mobile."""

    user_id: str
    employee_no: str | None
    email: str | None
    mobile: str | None
    name: str | None


@dataclass(frozen=True)
class StreamCapabilities:
    """What a connector does with one of its streams. Each connector class declares them in
    `STREAMS`, the one place they are written: the config refuses at load a flow that asks a
    stream for more (connectors/registry.py reads them without making a connector), and the
    conformance tests prove each declared one works and each undeclared one is refused."""

    read: bool = False  # read_page: the source of a pull (Beat's schedule, `syncctl run`)
    write: bool = False  # write: the target of a flow
    # Webhook events that sync a flow reading this stream (trigger.webhook), each handled by
    # sync_pipeline/pipeline/events: approval_changed re-reads the record (the class is ReadsOne),
    # message takes the record from the event (and hydrates it).
    events: frozenset[EventKind] = frozenset()
    # The connector option this stream cannot work without (the process codes a read of
    # approvals lists): a flow on the stream is refused at load while its connector lacks it.
    option: str | None = None
    # read back: its objects can be read at the vendor and compared with what we wrote
    # (connectors.base.ReadsBack): `syncctl reconcile` and a flow's `reconcile:` need it.
    reads_back: bool = False
    # Why it cannot be read back, as the vendor's read APIs stand (said at load and by
    # `syncctl reconcile`); empty where it can be, or where nothing more precise is known.
    no_read_back: str = ""

    def roles(self) -> str:
        """What the stream can do, as words: "read, written", "written", ..."""
        can = [word for word, yes in (("read", self.read), ("written", self.write)) if yes]
        can += [f"synced on {kind} events" for kind in sorted(self.events)]
        can += ["read back"] if self.reads_back else []
        return ", ".join(can) or "nothing"


READ_ONLY = StreamCapabilities(read=True)
WRITE_ONLY = StreamCapabilities(write=True)


class Connector(Protocol):
    vendor: str  # "oa", "wecom", "dingtalk", "feishu", "agora"
    STREAMS: ClassVar[Mapping[str, StreamCapabilities]]  # stream -> what it can do
    OPTIONS: ClassVar[type[OptionsSchema]]  # what it reads under `options:` (config/options.py)

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        """One page of `stream` inside `window`, ordered by cursor value.

        Same arguments, same page: callers may repeat. Raises Transient errors to retry.
        """
        ...

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Fill in what the list call does not give (detail calls), for just these records.

        The pipeline calls it only for records whose version changed, so an unchanged sync
        costs one list call. Connectors whose list gives everything return `records`.
        """
        ...

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        """Make one remote effect, carrying the vendor's dedupe handle derived from
        `request.effect_key` where the vendor has one.

        A refusal of this record (bad recipient, bad content) returns a REJECTED result; a
        Transient error is raised, and the caller retries under the same effect key.
        """
        ...

    def list_users(self) -> list[DirectoryUser]:
        """Everyone the platform knows, for the directory that maps users across platforms."""
        ...

    def dedupe_window_s(self, stream: str) -> float | None:
        """How long the vendor itself drops a resend carrying the same handle (Feishu uuid
        1 h, WeCom duplicate check up to 4 h); None when it does not. Inside the window a
        write whose outcome is unknown may be resent safely."""
        ...

    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        """None on success. The body decides: IM vendors report errors with HTTP 200."""
        ...


class Directory(Protocol):
    """Connectors that can list their users implement this too."""

    def list_users(self) -> list[DirectoryUser]: ...


@runtime_checkable
class ReadsOne(Protocol):
    """Sources that can re-read one record by id, which is what a webhook event names."""

    def read_one(self, stream: str, source_id: str) -> Record | None:
        """The record now, as `read_page` would give it (`hydrate` adds the rest), or None
        when it is gone or out of sight. An event may be late, repeated or out of order: the
        source's current state is what counts (DESIGN.md section 5)."""
        ...


@runtime_checkable
class UpdatesCards(Protocol):
    """IMs whose cards we can change in place on our own, with no user pressing anything."""

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        """Whether a card sent `age_s` seconds ago can be updated in place now, given the
        handles its send returned that no update has spent (WeCom's one-use response_code).
        False sends a message instead, rather than a call the vendor would refuse."""
        ...


@runtime_checkable
class LooksUpEffects(Protocol):
    """Connectors that can read back, at the vendor, whether an effect we may have made is
    there: how an effect whose answer was lost, past the vendor's dedupe window (or with no
    such window), is settled without sending it blindly (DESIGN.md section 3, step 4)."""

    def looks_up(self, stream: str) -> bool:
        """Whether `look_up` can answer for the effects of `stream`."""
        ...

    def look_up(self, stream: str, request: WriteRequest) -> WriteResult | None:
        """What the vendor holds of `request`: a DONE result (with the vendor's id) when the
        effect is there; None when it is not and sending it now is safe; a REJECTED result
        when it is not there and can no longer be made (the reason says why)."""
        ...


@dataclass(frozen=True)
class TargetView:
    """An object at a flow's target as reconciliation compares it: its id and the fields the
    flow decides there (an approval center instance: its status and whose tasks are open),
    as text. Fields the target may change on its own (times, read marks) are left out."""

    target_id: str
    fields: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.fields)


@dataclass(frozen=True)
class ViewPage:
    """One page of the objects of ours a target holds, and the token of the next (None: last)."""

    views: tuple[TargetView, ...]
    next_token: str | None


@runtime_checkable
class ReadsBack(Protocol):
    """Targets whose objects can be read back at the vendor and compared with what we wrote
    (`syncctl reconcile`, pipeline/reconcile.py). Declared per stream by
    `StreamCapabilities.reads_back`."""

    def expected_view(self, stream: str, request: WriteRequest) -> TargetView | None:
        """What making `request` leaves at the target; None when it makes no object."""
        ...

    def suspects(self, stream: str, requests: Sequence[WriteRequest]) -> set[str]:
        """The target ids, of the objects these writes made, that may not be as written: the
        vendor's own check where it has one (Feishu `external_instances/check`), else all."""
        ...

    def read_back(self, stream: str, requests: Sequence[WriteRequest]) -> dict[str, TargetView]:
        """The objects these writes made (each with its id-map target id), as the target holds
        them now, by their views' target ids; an id left out is not there (or was removed: a
        status that means gone counts as not there)."""
        ...

    def repair_request(
        self, stream: str, request: WriteRequest, held: TargetView | None
    ) -> WriteRequest:
        """The write that makes the object stand as `request` plans it again, given what the
        target holds (`held`, None: not there), sent through the flow's writes: never a
        second object where one stands."""
        ...

    def list_back(self, stream: str, page_token: str | None, limit: int) -> ViewPage:
        """One page of every object of ours the target holds (removed ones left out)."""
        ...

    def remove_back(self, stream: str, target_id: str, request: WriteRequest) -> WriteResult:
        """Remove an object we did not make (reconciliation's repair of an extra one), as the
        vendor removes it: DONE, or REJECTED and why. Sending it again changes nothing."""
        ...


@runtime_checkable
class PostsToGroups(Protocol):
    """Connectors that post a card to a group chat (an ops group's alert, pipeline/alerts.py),
    under the vendor's dedupe handle derived from the request's effect key."""

    def post_to_group(self, chat_id: str, request: WriteRequest) -> WriteResult:
        """The card of `request.notification.content` (title, text, status_label, fields)
        posted in the group `chat_id`: DONE with the message id, or REJECTED and why."""
        ...

    def group_dedupe_window_s(self) -> float | None:
        """How long a resend of a post is a no-op at the vendor (None: never)."""
        ...


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


DECISION_KIND = NotifyKind.DECISION.value  # the effect kind of a decision made as the approver


@dataclass(frozen=True)
class DecisionRequest:
    """An approval decided in the source as its approver, as the effect protocol carries it
    (a WriteRequest of kind "oa_action"): which decision, by whom, at which node of the
    request, with what comment. The node is how a lost answer is looked up (`look_up`)."""

    source_id: str
    decision: Decision
    as_user: str
    node: str
    comment: str = ""

    def request(self, effect_key: str) -> WriteRequest:
        content = {"decision": self.decision.value, "node": self.node, "comment": self.comment}
        note = Notification(NotifyKind.DECISION, self.as_user, content)
        return WriteRequest(effect_key, self.source_id, WriteOp.UPDATE, note)

    @classmethod
    def of(cls, request: WriteRequest) -> DecisionRequest:
        """The decision a request carries; ValueError if it carries none."""
        note = request.notification
        content = note.content
        if note.kind is not NotifyKind.DECISION:
            raise ValueError(f"effect {request.effect_key[:16]} is not an approval decision")
        return cls(
            source_id=request.source_id,
            decision=Decision(str(content.get("decision"))),
            as_user=note.to or "",
            node=str(content.get("node") or ""),
            comment=str(content.get("comment") or ""),
        )


@runtime_checkable
class DecidesApprovals(Protocol):
    """Sources whose approvals can be decided through their API, acting as the approver."""

    timezone: tzinfo  # the source's local time, for the times people read in messages

    def decide(
        self, stream: str, source_id: str, decision: Decision, as_user: str, comment: str
    ) -> None:
        """Approve or reject as user `as_user` (the source's own user id). Not idempotent at
        the vendor, so never resent: callers check the approval's state first, and again after
        an unknown outcome. A refusal (not their turn any more) raises VendorRejected."""
        ...


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector gets from the process: shared Redis, where monthly quotas are counted
    (the runtime's PostgreSQL store; None: quotas are not metered), one pooled HTTP session,
    and where rotating refresh tokens are kept (the runtime's PostgreSQL store; None: a
    connector that needs one refuses to be made)."""

    redis: redis.Redis
    quotas: QuotaStore | None
    session: requests.Session
    refresh_tokens: RefreshTokenStore | None = None


Options = TypeVar("Options", bound=ConnectorOptions)


def options_of(config: ConnectorConfig, kind: type[Options]) -> Options:
    """The connector's options, as its OPTIONS schema loaded them. Only a config loaded with
    the environment holds them (make_connector refuses any other), so anything else is a bug."""
    if not isinstance(config.options, kind):
        raise TypeError(f"connector {config.name}: options not loaded as {kind.__name__}")
    return config.options


# Config spells "every other API" and "all APIs together" as words; the HTTP layer as "*".
CONFIG_DEFAULT_API = "default"
CONFIG_ALL_APIS = "all"


def build_client(
    config: ConnectorConfig,
    ctx: ConnectorContext,
    classify: Classify,
    token_provider: TokenProvider | None = None,
    *,
    app: str,
) -> HttpClient:
    """An HttpClient wired with the instance's limits, monthly quota and a shared breaker."""
    limits = {
        ("*" if api == CONFIG_DEFAULT_API else api): [
            (w.count, max(1, round(w.per_s))) for w in windows
        ]
        for api, windows in config.rate_limits.items()
    }
    quota = None
    if config.monthly_quota and ctx.quotas is not None:
        monthly = {
            ("*" if api == CONFIG_ALL_APIS else api): n for api, n in config.monthly_quota.items()
        }
        quota = QuotaBudget(ctx.quotas, config.vendor.value, app, monthly)
    return HttpClient(
        config.vendor.value,
        app,
        config.base_url,
        session=ctx.session,
        redis=ctx.redis,
        classify=classify,
        token_provider=token_provider,
        limits=limits,
        quota=quota,
        breaker=CircuitBreaker(
            ctx.redis,
            config.vendor.value,
            app,
            failure_threshold=config.breaker.failures,
            reset_timeout_s=config.breaker.reset_s,
        ),
        timeout=(min(3.05, config.timeout_s), config.timeout_s),
    )
