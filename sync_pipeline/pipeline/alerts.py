"""Alerts: rules from config/alerts.yaml, evaluated on Beat's tick, each alert sent once when
it starts firing and once when it resolves, never per run (README, "Alerts").

`evaluate` runs every `evaluate_every_s` (`admin.evaluate_alerts`, workers/beat.py). For each
rule and subject (a flow, or a vendor) it:

1. looks at what is wrong now (`observe`: PostgreSQL for runs, dead letters and unknown
   effects; Redis for the circuit breakers);
2. decides, under the alert's row lock in one short transaction, its next state (`decide`, a
   pure function): wrong for less than `for_s` is pending, then firing; fine again after
   firing is resolved;
3. after that transaction, delivers the notice the row says is due (`due`) to each of the
   rule's destinations, through the effect protocol (pipeline/effects.py `make`): its key
   names the rule, the subject, the firing epoch, the state and the destination, so a
   redelivered task, a second evaluator or the next tick never sends it twice; the row is
   marked notified only once every destination has it, and an undelivered notice is tried
   again on the next tick under the same key.

A flow whose runs fail `threshold` times in a row calls `on_consecutive_failures` when the
alert starts firing: the hook where pausing the flow is wired in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import requests
import sqlalchemy as sa

from sync_pipeline.config.alerts import (
    AlertKind,
    Destination,
    GroupDestination,
    Rule,
    WebhookDestination,
)
from sync_pipeline.connectors.base import CONFIG_ALL_APIS, PostsToGroups
from sync_pipeline.errors import ConfigError, OutcomeUnknown, VendorUnavailable
from sync_pipeline.failures import describe
from sync_pipeline.http.breaker import circuits_open
from sync_pipeline.http.quota import ALL_APIS
from sync_pipeline.pipeline.effects import Unanswerable, make
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import (
    Notification,
    NotifyKind,
    WriteOp,
    WriteRequest,
    WriteResult,
    WriteStatus,
)
from sync_pipeline.state import alerts as rows
from sync_pipeline.state import (
    connections,
    controls,
    deadletters,
    effects,
    inbound,
    quotas,
    reconciles,
    runs,
)
from sync_pipeline.state.alerts import Alert, AlertState
from sync_pipeline.status import flow_statuses

log = logging.getLogger(__name__)

EVALUATE_TASK = "admin.evaluate_alerts"
ALERTS_FLOW = "alerts"  # the `flow` of alert deliveries in the effects table
WEBHOOK_SYSTEM = "webhook"
# How long a receiver of the signed webhook must treat a repeated X-Sync-Delivery as the same
# notice (README, "Alerts"): a delivery whose answer was lost is resent under it within this.
WEBHOOK_DEDUPE_S = 24 * 3600.0
WEBHOOK_TIMEOUT_S = (3.05, 10.0)
SIGNATURE_HEADER = "X-Sync-Signature"
TIMESTAMP_HEADER = "X-Sync-Timestamp"
DELIVERY_HEADER = "X-Sync-Delivery"


# -- what is wrong now ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """What one look at a subject found: whether it is wrong, and what (one line)."""

    subject: str
    wrong: bool
    detail: str = ""


def observe(rt: Runtime, rule: Rule) -> list[Seen]:
    """What is wrong now for each of the rule's subjects."""
    if rule.kind is AlertKind.VENDOR_DOWN:
        vendors = rule.vendors or sorted({c.vendor.value for c in rt.config.connectors.values()})
        return [_vendor_down(rt, vendor) for vendor in vendors]
    if rule.kind is AlertKind.QUOTA:
        return _quotas(rt, rule)
    if rule.kind is AlertKind.WEBHOOK_REFUSALS:
        return _refusals(rt, rule)
    if rule.kind is AlertKind.EVENT_CONNECTION:
        return _event_connections(rt, rule)
    flows = rule.flows or tuple(f.name for f in rt.config.enabled_flows())
    if rule.kind is AlertKind.LAG:
        lags = {s.flow: s.lag_s for s in flow_statuses(rt.engine, rt.config)}
        return [_lagging(f, lags.get(f), rule) for f in flows]
    with rt.engine.connect() as conn:
        if rule.kind is AlertKind.CONSECUTIVE_FAILURES:
            return [_failing(runs.recent_pulls(conn, f, rule.threshold), f, rule) for f in flows]
        if rule.kind is AlertKind.RECONCILIATION_DRIFT:
            return [_drifting(reconciles.latest_finished(conn, f), f, rule) for f in flows]
        if rule.kind is AlertKind.DEAD_LETTERS:
            counts = {f: deadletters.count_open(conn, f) for f in flows}
            what = "open dead letters"
        else:
            counts = {f: effects.count_by_status(conn, f).get("unknown", 0) for f in flows}
            what = "effects of unknown outcome"
    return [Seen(f, n >= rule.threshold, f"{n} {what}") for f, n in counts.items()]


def _failing(recent: Sequence[runs.Run], flow: str, rule: Rule) -> Seen:
    failed = [r for r in recent if r.status is runs.RunStatus.FAILED]
    if len(recent) < rule.threshold or len(failed) < rule.threshold:
        return Seen(flow, False)
    return Seen(flow, True, f"its last {rule.threshold} runs failed: {recent[0].error or '?'}")


def _drifting(newest: reconciles.Reconcile | None, flow: str, rule: Rule) -> Seen:
    """The newest reconciliation's drift left unrepaired; a flow never reconciled has none."""
    if newest is None:
        return Seen(flow, False)
    what = f"reconcile #{newest.id} found {len(newest.drift)} objects not in step at its target"
    return Seen(flow, newest.left >= rule.threshold, f"{what}, {newest.left} left unrepaired")


def _lagging(flow: str, lag_s: float | None, rule: Rule) -> Seen:
    """Lag as `syncctl status` shows it; a flow that never pulled successfully has none
    (its failing runs are another rule's)."""
    if lag_s is None:
        return Seen(flow, False)
    return Seen(flow, lag_s >= rule.threshold, f"its oldest unsynced change is {lag_s:.0f} s old")


def _quotas(rt: Runtime, rule: Rule) -> list[Seen]:
    """Each connector with a monthly quota (of the rule's vendors): the share of its tightest
    limit used this month, by the busiest app of its vendor."""
    period = datetime.now(UTC).strftime("%Y-%m")
    seen = []
    with rt.engine.connect() as conn:
        for name, connector in sorted(rt.config.connectors.items()):
            vendor = connector.vendor.value
            if not connector.monthly_quota or (rule.vendors and vendor not in rule.vendors):
                continue
            used = quotas.most_used(conn, vendor, period)
            shares = {
                api: 100 * used.get(ALL_APIS if api == CONFIG_ALL_APIS else api, 0) / limit
                for api, limit in connector.monthly_quota.items()
            }
            api, share = max(shares.items(), key=lambda item: item[1])
            scope = "all APIs" if api == CONFIG_ALL_APIS else api
            what = f"{share:.0f} % of the {period} quota for {scope} used"
            seen.append(Seen(name, share >= rule.threshold, what))
    return seen


def _refusals(rt: Runtime, rule: Rule) -> list[Seen]:
    """Each connector that receives webhooks (of the rule's vendors): the deliveries its
    webhook refused in the last `window_s` (forged, stale, replayed, malformed; a vendor's
    duplicate delivery is not a refusal here). Buckets older than a day are pruned."""
    names = sorted(
        name
        for name, connector in rt.config.connectors.items()
        if connector.webhook is not None
        and (not rule.vendors or connector.vendor.value in rule.vendors)
    )
    with rt.engine.begin() as conn:
        inbound.prune_refusal_counts(conn)
        counts = inbound.refusals_within(conn, rule.window_s, leave_out=(inbound.DUPLICATE,))
    seen = []
    for name in names:
        reasons = counts.get(name, {})
        refused = sum(reasons.values())
        by = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        what = f"{refused} webhook deliveries refused in the last {rule.window_s} s"
        seen.append(Seen(name, refused >= rule.threshold, f"{what} ({by})" if by else what))
    return seen


def _event_connections(rt: Runtime, rule: Rule) -> list[Seen]:
    """Each connector with an `events:` connection (of the rule's vendors): wrong while it is
    down or silent, or when `syncctl events connect` has written nothing for twice its
    silence limit (not running), or never connected."""
    seen = []
    with rt.engine.connect() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        for name, connector in sorted(rt.config.connectors.items()):
            events = connector.events
            if events is None or (rule.vendors and connector.vendor.value not in rule.vendors):
                continue
            found = connections.get(conn, name)
            if found is None:
                seen.append(Seen(name, True, "its event connection never came up"))
            elif not found.alive:
                seen.append(Seen(name, True, f"its event connection is down: {found.detail}"))
            elif (now - found.seen_at).total_seconds() > 2 * events.silence_s:
                quiet = (now - found.seen_at).total_seconds()
                seen.append(Seen(name, True, f"nothing heard of its connection for {quiet:.0f} s"))
            else:
                seen.append(Seen(name, False))
    return seen


def _vendor_down(rt: Runtime, vendor: str) -> Seen:
    opened = circuits_open(rt.redis, vendor)
    return Seen(vendor, opened > 0, f"{vendor}'s circuit breaker is open: calls fail fast")


# -- the decision --------------------------------------------------------------------------------
def decide(rule: Rule, prior: Alert | None, seen: Seen, now: datetime) -> Alert:
    """The alert's next state after `seen`: pure, so that it is tested without a server.

    Wrong: pending since it was first seen wrong, firing once that is `for_s` ago (a new
    firing epoch, its notices not sent yet); firing stays firing. Fine: firing becomes
    resolved (its firing notice's flag kept, so `due` knows whether to say it resolved);
    pending (never fired) becomes ok, silently.
    """
    state = prior.state if prior is not None else AlertState.OK
    if seen.wrong:
        if state in (AlertState.OK, AlertState.RESOLVED) or prior is None:
            base = prior or Alert(rule.name, seen.subject, AlertState.OK, now)
            prior = replace(base, state=AlertState.PENDING, since=now)
        if prior.state is AlertState.PENDING and (now - prior.since).total_seconds() >= rule.for_s:
            return replace(
                prior,
                state=AlertState.FIRING,
                epoch=prior.epoch + 1,
                detail=seen.detail,
                notified_firing=False,
                notified_resolved=False,
            )
        return replace(prior, detail=seen.detail)
    if prior is None:
        return Alert(rule.name, seen.subject, AlertState.OK, now)
    if state is AlertState.FIRING:
        return replace(prior, state=AlertState.RESOLVED, since=now)
    if state is AlertState.PENDING:
        return replace(prior, state=AlertState.OK, since=now)
    return prior


def due(alert: Alert) -> AlertState | None:
    """The notice the alert still owes: its firing, or its resolution once its firing was
    told (an alert that resolved before its firing got out says nothing)."""
    if alert.state is AlertState.FIRING and not alert.notified_firing:
        return AlertState.FIRING
    if alert.state is AlertState.RESOLVED and alert.notified_firing and not alert.notified_resolved:
        return AlertState.RESOLVED
    return None


# -- the notice ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Notice:
    """What is sent: which rule and subject, what is wrong since when, the next command."""

    rule: str
    kind: AlertKind
    subject: str
    state: AlertState
    epoch: int
    since: datetime
    detail: str
    next_step: str

    def key(self, destination: str) -> str:
        return f"alert:{self.rule}:{self.subject}:{self.epoch}:{self.state}:{destination}"

    @property
    def title(self) -> str:
        word = "FIRING" if self.state is AlertState.FIRING else "RESOLVED"
        return f"[{word}] {self.rule}: {self.subject}"

    @property
    def text(self) -> str:
        since = self.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.state is AlertState.FIRING:
            return f"{self.detail} (since {since}). Next: {self.next_step}"
        return f"Resolved at {since}: {self.subject} is fine again."

    def as_json(self) -> dict[str, str | int]:
        return {
            "rule": self.rule,
            "kind": self.kind.value,
            "subject": self.subject,
            "state": self.state.value,
            "epoch": self.epoch,
            "since": self.since.astimezone(UTC).isoformat(),
            "detail": self.detail,
            "next": self.next_step,
        }

    def request(self, destination: str, to: str | None) -> WriteRequest:
        """The card: what each IM's connector turns into its own (the title, the text, the
        subject, since when and the next command as fields); no buttons."""
        fields = {"Rule": self.rule, "Subject": self.subject, "Next": self.next_step}
        content = {
            "title": self.title,
            "text": self.text,
            "status_label": self.state.value,
            "fields": fields,
            "approval": False,
        }
        note = Notification(NotifyKind.CARD, to, content)
        return WriteRequest(self.key(destination), self.subject, WriteOp.CREATE, note)


def next_step(kind: AlertKind, subject: str) -> str:
    """The command an operator runs next, by kind of trouble."""
    return {
        AlertKind.CONSECUTIVE_FAILURES: (
            f"the flow is paused: syncctl status, fix the cause, then: syncctl flow resume"
            f" {subject}"
        ),
        AlertKind.VENDOR_DOWN: (
            f"syncctl health; runs resume by themselves once {subject} answers again"
        ),
        AlertKind.DEAD_LETTERS: f"syncctl dlq list --flow {subject}",
        AlertKind.UNKNOWN_EFFECTS: "syncctl effects list, then syncctl effects settle ID",
        AlertKind.LAG: f"syncctl status; then syncctl run {subject} --wait",
        AlertKind.RECONCILIATION_DRIFT: f"syncctl reconcile {subject} --repair",
        AlertKind.QUOTA: f"raise the monthly_quota of {subject} or wait for the next month",
        AlertKind.WEBHOOK_REFUSALS: (
            f"syncctl webhooks stats; check {subject}'s webhook secrets in connectors.yaml"
            " against the vendor console, and who else is calling its callback URL"
        ),
        AlertKind.EVENT_CONNECTION: (
            f"check `syncctl events connect {subject}` is running and its log; it reconnects"
            " by itself, and the scheduled pull catches what it missed"
        ),
    }[kind]


def notice_of(rule: Rule, alert: Alert, state: AlertState) -> Notice:
    return Notice(
        rule=rule.name,
        kind=rule.kind,
        subject=alert.subject,
        state=state,
        epoch=alert.epoch,
        since=alert.since,
        detail=alert.detail,
        next_step=next_step(rule.kind, alert.subject),
    )


# -- delivery ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupPost:
    """The effector of an alert posted in an IM group (connectors.base.PostsToGroups)."""

    connector: PostsToGroups
    chat_id: str
    name: str
    system: str

    def attempt(self, request: WriteRequest) -> WriteResult:
        return self.connector.post_to_group(self.chat_id, request)

    def dedupe_window_s(self) -> float | None:
        return self.connector.group_dedupe_window_s()

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None:
        return Unanswerable.NO_LOOKUP


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature of a webhook delivery: HMAC-SHA256 of `timestamp.body` with the secret,
    in hex (README, "Alerts", tells receivers how to check it)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class SignedWebhook:
    """The effector of an alert POSTed as signed JSON to a generic webhook. The receiver
    dedupes on X-Sync-Delivery (the effect key) for WEBHOOK_DEDUPE_S."""

    url: str
    secret: str
    session: requests.Session
    name: str
    system: str = WEBHOOK_SYSTEM

    def attempt(self, request: WriteRequest) -> WriteResult:
        body = json.dumps(request.notification.content, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            DELIVERY_HEADER: request.effect_key,
        }
        try:
            answer = self.session.post(
                self.url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
            )
        except requests.ConnectTimeout as exc:  # never connected: nothing was sent
            raise VendorUnavailable(self.name, "unreachable", "no connection") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:  # may have arrived
            raise OutcomeUnknown(self.name, "no_answer", "the webhook did not answer") from exc
        if answer.status_code >= 500:
            raise VendorUnavailable(self.name, f"http_{answer.status_code}", "the webhook failed")
        if answer.status_code >= 400:
            reason = f"the webhook refused it (HTTP {answer.status_code})"
            return WriteResult(request.effect_key, WriteStatus.REJECTED, reason=reason)
        return WriteResult(request.effect_key, WriteStatus.DONE, request.effect_key)

    def dedupe_window_s(self) -> float | None:
        return WEBHOOK_DEDUPE_S

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None:
        return Unanswerable.NO_LOOKUP


def _webhook_request(notice: Notice, destination: str) -> WriteRequest:
    note = Notification(NotifyKind.MESSAGE, None, notice.as_json())
    return WriteRequest(notice.key(destination), notice.subject, WriteOp.CREATE, note)


def deliver(rt: Runtime, notice: Notice, destination: Destination) -> bool:
    """The notice made once at each of the destination's ends (effects.make); True when
    every one has it. A refusal is logged and counts as delivered: resending it would be
    refused again, and the next notice (its resolution) still goes out."""
    made = True
    if destination.group is not None:
        made &= _made(rt, notice, destination.name, _group(rt, destination.group), None)
    if destination.webhook is not None:
        made &= _made(rt, notice, destination.name, _webhook(rt, destination), "webhook")
    return made


def _made(
    rt: Runtime,
    notice: Notice,
    destination: str,
    effector: GroupPost | SignedWebhook,
    end: str | None,
) -> bool:
    where = destination if end is None else f"{destination}.{end}"
    if isinstance(effector, SignedWebhook):
        request = _webhook_request(notice, where)
    else:
        request = notice.request(where, effector.chat_id)
    settled = make(rt, ALERTS_FLOW, effector, [request])
    outcome = settled.outcomes.get(request.effect_key)
    if outcome is None:
        return False  # another evaluator is making it: its row says when it is done
    if outcome.status is not WriteStatus.DONE:
        log.warning("alert %s to %s was refused: %s", notice.title, where, outcome.reason)
    return True


def _group(rt: Runtime, group: GroupDestination) -> GroupPost:
    connector = rt.connector(group.connector)
    if not isinstance(connector, PostsToGroups):
        raise ConfigError(
            str(rt.settings.config_dir / "alerts.yaml"),
            [("group.connector", f"expected a connector that posts to groups: {group.connector}")],
        )
    system = rt.config.connectors[group.connector].system
    return GroupPost(connector, group.chat_id, group.connector, system)


def _webhook(rt: Runtime, destination: Destination) -> SignedWebhook:
    hook: WebhookDestination | None = destination.webhook
    assert hook is not None  # noqa: S101 - deliver checked it
    secret = os.environ.get(hook.secret_env, "")
    if not secret:
        raise ConfigError(
            str(rt.settings.config_dir / "alerts.yaml"),
            [
                (
                    f"destinations.{destination.name}.webhook.secret_env",
                    f"expected the variable {hook.secret_env} to be set",
                )
            ],
        )
    return SignedWebhook(hook.url, secret, rt.session, f"webhook {destination.name}")


# -- the hook for pausing ------------------------------------------------------------------------
def on_consecutive_failures(rt: Runtime, flow: str, alert: Alert) -> None:
    """A flow's runs failed `threshold` times in a row and its alert just started firing: the
    flow is paused (Beat's pulls, `syncctl run`, its events and resyncs wait) until an
    operator fixes the cause and runs `syncctl flow resume FLOW`, as the alert says."""
    with rt.engine.begin() as conn:
        paused = controls.set_paused(conn, flow, True, by="alerts", reason=alert.detail)
    log.warning(
        "flow %s: %s since %s; %s; next: %s",
        flow,
        alert.detail,
        alert.since.isoformat(),
        "paused" if paused else "already paused",
        next_step(AlertKind.CONSECUTIVE_FAILURES, flow),
    )


# -- one tick ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluated:
    """What one evaluation did: alerts that started firing, that resolved, notices sent, and
    notices left for the next tick (their destination failed)."""

    fired: int = 0
    resolved: int = 0
    sent: int = 0
    left: int = 0


def evaluate(rt: Runtime, now: datetime | None = None) -> Evaluated:
    """Every rule, every subject: decide, then deliver what is due (module docstring)."""
    fired = resolved = sent = left = 0
    for rule in rt.config.alerts.all_rules:
        for seen in observe(rt, rule):
            alert, before = _decided(rt, rule, seen, now or datetime.now(UTC))
            if alert.state is AlertState.FIRING and before is not AlertState.FIRING:
                fired += 1
                if rule.kind is AlertKind.CONSECUTIVE_FAILURES:
                    on_consecutive_failures(rt, seen.subject, alert)
            if alert.state is AlertState.RESOLVED and before is AlertState.FIRING:
                resolved += 1
            state = due(alert)
            if state is None:
                continue
            if _notify(rt, rule, alert, state):
                sent += 1
            else:
                left += 1
    return Evaluated(fired, resolved, sent, left)


def _decided(rt: Runtime, rule: Rule, seen: Seen, now: datetime) -> tuple[Alert, AlertState | None]:
    with rt.engine.begin() as conn:
        prior = rows.locked(conn, rule.name, seen.subject)
        alert = decide(rule, prior, seen, now)
        rows.save(conn, alert)  # its evaluated_at too: when it was last looked at
    return alert, None if prior is None else prior.state


def _notify(rt: Runtime, rule: Rule, alert: Alert, state: AlertState) -> bool:
    notice = notice_of(rule, alert, state)
    destinations: Mapping[str, Destination] = rt.config.alerts.destinations
    delivered = True
    for name in rule.notify:
        try:
            delivered &= deliver(rt, notice, destinations[name])
        except Exception as exc:  # noqa: BLE001 - tried again on the next tick, same keys
            log.warning("alert %s to %s not delivered: %s", notice.title, name, describe(exc))
            delivered = False
    if delivered:
        with rt.engine.begin() as conn:
            rows.mark_notified(conn, rule.name, alert.subject, alert.epoch, state)
    return delivered
