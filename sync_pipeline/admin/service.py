"""What each admin endpoint does, with the same checks and refusals as the command line.

Every refusal is an `AdminRefused` (status, code, one line): an unknown flow is 404; a flow
that may not do it now (disabled, paused, webhook-only, a resync already running, a pull
holding its cursor) is 409. Nothing here is asynchronous: the app runs these in its thread
pool. No transaction is held while a task is sent (dispatch.send_request commits first).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa

from sync_pipeline import dispatch
from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import Config
from sync_pipeline.errors import AdminRefused
from sync_pipeline.follow import trigger_run
from sync_pipeline.records import iso_utc
from sync_pipeline.resync_follow import ask_resync, send_resync
from sync_pipeline.settings import Settings
from sync_pipeline.state import (
    alerts,
    controls,
    cursors,
    deadletters,
    effects,
    locks,
    requests,
    resyncs,
    runs,
)
from sync_pipeline.state.db import engine_for
from sync_pipeline.status import FlowStatus, flow_statuses, resync_json, run_json
from sync_pipeline.untrusted import clean_text

CURSOR_LOCK_S = 60.0  # as `syncctl cursor set`: long enough to set it, short if we die


@dataclass(frozen=True)
class RequestView:
    """A recorded work request (a run, a resync's task, a replay) and the run it opened."""

    request: requests.WorkRequest
    run: runs.Run | None = None

    def as_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": r.id,
            "kind": r.kind.value,
            "flow": r.flow,
            "task": r.task.name,
            "task_id": r.task_id,
            "status": r.status.value,
            "sends": r.sends,
            "created_at": r.created_at.isoformat(),
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "run": run_json(self.run),
        }


@dataclass(frozen=True)
class ResyncAsked:
    resync: resyncs.Resync
    request: requests.WorkRequest

    def as_json(self) -> dict[str, Any]:
        return {"resync": resync_view(self.resync), "request": RequestView(self.request).as_json()}


def resync_view(resync: resyncs.Resync) -> dict[str, Any]:
    """A resync as `syncctl status` shows it, with its flow, window and end."""
    return {
        **(resync_json(resync) or {}),
        "flow": resync.flow,
        "until": resync.until,
        "finished_at": resync.finished_at.isoformat() if resync.finished_at else None,
        "error": resync.error,
    }


@dataclass(frozen=True)
class PauseView:
    flow: str
    paused: bool
    changed: bool  # False: it already was so
    by: str

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CursorView:
    flow: str
    cursor: str | None
    fence: int
    before: str | None = None  # after a set: the cursor it replaced
    run_id: int | None = None  # after a set: the run history's record of it

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EffectView:
    effect: effects.Effect
    age_s: float

    def as_json(self) -> dict[str, Any]:
        e = self.effect
        return {
            "id": e.id,
            "key": e.key,
            "flow": e.flow,
            "record": e.source_id or "",
            "target": e.target_system + (f" {e.recipient}" if e.recipient else ""),
            "kind": e.kind or "",
            "status": e.status.value,
            "age_s": round(self.age_s, 3),
            "error": e.last_error,
        }


@dataclass(frozen=True)
class Settled:
    effect_id: int
    verdict: str  # done | retry
    letters: tuple[int, ...]  # its dead letters: closed (done) or replayed (retry)
    request: requests.WorkRequest | None  # the replay's request (retry with letters)

    def as_json(self) -> dict[str, Any]:
        return {
            "effect_id": self.effect_id,
            "verdict": self.verdict,
            "letters": list(self.letters),
            "request": None if self.request is None else RequestView(self.request).as_json(),
        }


def alert_json(alert: alerts.Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "subject": alert.subject,
        "state": alert.state.value,
        "since": alert.since.isoformat(),
        "epoch": alert.epoch,
        "detail": alert.detail,
        "notified_firing": alert.notified_firing,
        "notified_resolved": alert.notified_resolved,
    }


def moment(text: str) -> str | None:
    """A date or moment (ISO 8601; UTC unless it says) as a cursor spells it; None if not one."""
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return iso_utc(found if found.tzinfo else found.replace(tzinfo=UTC))


class AdminService:
    """The admin API's state: the settings, the flows (no secrets: the workers hold them),
    a PostgreSQL pool and a Redis client."""

    def __init__(self, settings: Settings, config: Config) -> None:
        self.settings, self.config = settings, config
        redis_url, database_url = settings.urls()
        self.engine = engine_for(database_url, settings.connect_timeout_s)
        timeout = settings.connect_timeout_s
        self.redis = redis.Redis.from_url(
            redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )

    def close(self) -> None:
        self.redis.close()

    # -- flows ---------------------------------------------------------------------------------
    def flow(self, name: str) -> Flow:
        found = self.config.flows.get(name)
        if found is None:
            known = ", ".join(sorted(self.config.flows)) or "none"
            raise AdminRefused(404, "unknown_flow", f"no flow {name!r}; expected one of: {known}")
        return found

    def statuses(self) -> list[FlowStatus]:
        return flow_statuses(self.engine, self.config)

    def status(self, name: str) -> FlowStatus:
        self.flow(name)
        [found] = [f for f in self.statuses() if f.flow == name]
        return found

    def _pullable(self, name: str, what: str) -> Flow:
        flow = self.flow(name)
        if not self.config.pullable(flow):
            source = f"{flow.source.connector}/{flow.source.stream}"
            raise AdminRefused(
                409,
                "nothing_to_pull",
                f"{name} has nothing to {what}: {source} is synced only by its webhook events",
            )
        return flow

    def _refuse_paused(self, name: str) -> None:
        with self.engine.connect() as conn:
            pause = controls.paused(conn, name)
        if pause is not None:
            why = f": {pause.reason}" if pause.reason else ""
            raise AdminRefused(
                409,
                "paused",
                f"{name} is paused (by {pause.by} at {pause.at:%Y-%m-%d %H:%M} UTC{why});"
                f" resume it first: POST /flows/{name}/resume",
            )

    # -- runs ----------------------------------------------------------------------------------
    def trigger_run(self, name: str, even_if_disabled: bool) -> requests.WorkRequest:
        flow = self._pullable(name, "pull")
        if not flow.enabled and not even_if_disabled:
            raise AdminRefused(
                409,
                "disabled",
                f"{name} is disabled (enabled: false in its flow file), so it is not run;"
                ' to run it once anyway, send {"even_if_disabled": true}',
            )
        self._refuse_paused(name)
        return trigger_run(self.settings, name, even_if_disabled=even_if_disabled)

    def request(self, request_id: int) -> RequestView:
        with self.engine.connect() as conn:
            found = requests.get(conn, request_id)
            run = None if found is None or found.run_id is None else runs.get(conn, found.run_id)
        if found is None:
            raise AdminRefused(404, "unknown_request", f"no work request {request_id}")
        return RequestView(found, run)

    # -- resyncs -------------------------------------------------------------------------------
    def ask_resync(self, name: str, since: str | None, dry_run: bool, by: str) -> ResyncAsked:
        flow = self._pullable(name, "resync")
        if not flow.enabled:
            raise AdminRefused(
                409, "disabled", f"{name} is disabled (enabled: false in its flow file)"
            )
        start = None if since is None else moment(since)
        if since is not None and start is None:
            raise AdminRefused(
                422,
                "invalid",
                f"since: expected a date or moment in ISO 8601 (2026-03-01 or"
                f" 2026-03-01T09:30:00Z), got {since[:40]!r}",
            )
        self._refuse_paused(name)
        asked = ask_resync(self.settings, name, start, by, dry_run=dry_run)
        if asked.request is None:
            raise AdminRefused(
                409,
                "resync_running",
                f"resync #{asked.resync.id} of {name} is running already (asked by"
                f" {asked.resync.requested_by}): GET /resyncs/{asked.resync.id}",
            )
        return ResyncAsked(asked.resync, asked.request)

    def resync(self, resync_id: int) -> resyncs.Resync:
        with self.engine.connect() as conn:
            found = resyncs.get(conn, resync_id)
        if found is None:
            raise AdminRefused(404, "unknown_resync", f"no resync {resync_id}")
        return found

    # -- pause and resume ----------------------------------------------------------------------
    def set_paused(self, name: str, paused: bool, by: str, reason: str | None) -> PauseView:
        self.flow(name)
        with self.engine.begin() as conn:
            changed = controls.set_paused(conn, name, paused, by, reason)
            waiting = resyncs.running(conn, name)
        if changed and not paused and waiting is not None:
            send_resync(self.settings, waiting)  # it goes on from its checkpoint
        return PauseView(name, paused, changed, by)

    # -- cursors -------------------------------------------------------------------------------
    def cursor(self, name: str) -> CursorView:
        self.flow(name)
        with self.engine.connect() as conn:
            state = cursors.get(conn, name)
        return CursorView(name, state.cursor, state.fence)

    def set_cursor(self, name: str, value: str | None, by: str) -> CursorView:
        """As `syncctl cursor set`: refused while a pull holds the flow; recorded in the run
        history with who."""
        self.flow(name)
        cursor = None if value is None else _cursor_value(value)
        token = locks.acquire(self.redis, name, CURSOR_LOCK_S)
        if token is None:
            raise AdminRefused(409, "flow_busy", f"{name} is being pulled now; try once it ends")
        try:
            with self.engine.begin() as conn:
                running = runs.running_pull(conn, name)
                if running is not None:
                    raise AdminRefused(
                        409, "flow_busy", f"run #{running.id} of {name} holds the flow"
                    )
                before, fence = cursors.set_by_operator(conn, name, cursor)
                run_id = runs.record_cursor_set(conn, name, before.cursor, cursor, by, fence)
                state = cursors.get(conn, name)
        finally:
            locks.release(self.redis, name, token)
        return CursorView(name, state.cursor, state.fence, before.cursor, run_id)

    # -- dead letters --------------------------------------------------------------------------
    def dead_letters(
        self, flow: str | None, everything: bool, limit: int
    ) -> list[deadletters.DeadLetter]:
        if flow is not None:
            self.flow(flow)
        with self.engine.connect() as conn:
            return deadletters.letters(conn, flow, limit, everything=everything)

    def replay(self, flow: str | None, letter_ids: list[int] | None) -> requests.WorkRequest:
        """Record and send a replay (a worker sends the letters through their flow again);
        the letters' state tells how it went."""
        if flow is not None:
            self.flow(flow)
        task = requests.Task(dispatch.REPLAY_TASK, "admin", (flow, letter_ids))
        return dispatch.send_request(self.settings, requests.RequestKind.REPLAY, flow, task)

    # -- effects -------------------------------------------------------------------------------
    def effects(self, status: effects.EffectStatus, limit: int) -> list[EffectView]:
        with self.engine.connect() as conn:
            found = effects.listed(conn, status, limit)
            now: datetime = conn.execute(sa.select(sa.func.now())).scalar_one()
        return [EffectView(e, max(0.0, (now - e.created_at).total_seconds())) for e in found]

    def settle(self, effect_id: int, verdict: str, by: str) -> Settled:
        """As `syncctl effects settle`: done records it made and closes its dead letters;
        retry makes it sendable again and replays its dead letters, so it is made once."""
        with self.engine.begin() as conn:
            effect = effects.by_id(conn, effect_id)
            if effect is None:
                raise AdminRefused(404, "unknown_effect", f"no effect {effect_id}")
            if effect.status is not effects.EffectStatus.UNKNOWN:
                raise AdminRefused(
                    409,
                    "not_parked",
                    f"effect {effect_id} is {effect.status.value}, not parked: nothing to settle",
                )
            status = effects.EffectStatus.DONE if verdict == "done" else effects.EffectStatus.FAILED
            effects.settle(conn, effect_id, status, f"settled {verdict} by {by}")
            letters = tuple(
                d.id
                for d in deadletters.open_letters(conn, effect.flow)
                if d.record.get("effect_key") == effect.key
            )
            if verdict == "done":
                deadletters.close(conn, letters)
        request = None
        if verdict == "retry" and letters:
            request = self.replay(effect.flow, list(letters))
        return Settled(effect_id, verdict, letters, request)

    # -- alerts --------------------------------------------------------------------------------
    def alerts(self, everything: bool) -> list[alerts.Alert]:
        with self.engine.connect() as conn:
            return alerts.listed(conn, everything=everything)


def _cursor_value(value: str) -> str:
    """A cursor as flows store it: ISO-8601 UTC moments, or digits."""
    text = clean_text(value.strip())
    if text.isascii() and text.isdigit():
        return text
    found = moment(text)
    if found is None:
        raise AdminRefused(
            422,
            "invalid",
            f"value: expected a date or moment in ISO 8601, or digits; got {value[:40]!r}",
        )
    return found
