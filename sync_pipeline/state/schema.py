"""The state tables, as SQLAlchemy Core metadata: the shape the migrations build.

Why each table exists (DESIGN.md): cursors move only past pages that are written or
dead-lettered; the id map links a source record to its target object and the content hash last
written (dedupe and echo suppression); effect keys make each remote effect happen once across
Celery redelivery; runs record what every pull did; dead letters keep bad records with a reason
until they are replayed; flow fences stop a pull whose Redis lock vanished from committing over
a newer one.

Columns that hold outside text (ids, versions, cursors, vendor answers, errors) have the types
of state/types.py, so that no content can make a write fail; the rest hold our own words.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from sync_pipeline.state.types import ERROR_CHARS, REASON_CHARS, CleanText, OutsideId

metadata = sa.MetaData()

flow_cursors = sa.Table(
    "flow_cursors",
    metadata,
    sa.Column("flow", sa.Text, primary_key=True),
    sa.Column("cursor", CleanText(), nullable=True),
    sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

id_map = sa.Table(
    "id_map",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("source_system", sa.Text, nullable=False),
    sa.Column("source_stream", sa.Text, nullable=False),
    sa.Column("source_id", OutsideId(), nullable=False),
    sa.Column("target_system", sa.Text, nullable=False),
    sa.Column("target_stream", sa.Text, nullable=False),
    sa.Column("target_id", OutsideId(), nullable=True),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("source_version", CleanText(), nullable=True),
    sa.Column(
        "written_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint(
        "source_system",
        "source_stream",
        "source_id",
        "target_system",
        "target_stream",
        name="id_map_source_target",
    ),
)
sa.Index("id_map_by_target", id_map.c.target_system, id_map.c.target_stream, id_map.c.target_id)

effects = sa.Table(
    "effects",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("target_system", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("vendor_ref", OutsideId(), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", CleanText(ERROR_CHARS), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint(
        "status IN ('pending', 'done', 'failed', 'unknown')", name="effects_status_known"
    ),
)
sa.Index("effects_by_flow_status", effects.c.flow, effects.c.status)
# Added in 0003: what the effect was (for cards: the vendor's handles to update it in place).
effects.append_column(sa.Column("source_id", OutsideId(), nullable=True))
effects.append_column(sa.Column("kind", sa.Text, nullable=True))
effects.append_column(sa.Column("recipient", OutsideId(), nullable=True))
effects.append_column(sa.Column("detail", JSONB, nullable=True))
sa.Index("effects_by_source", effects.c.flow, effects.c.source_id)
# Added in 0009: a number for the operator to name an effect by (`syncctl effects settle ID`).
effects.append_column(sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False))
effects.append_constraint(sa.UniqueConstraint(effects.c.id, name="effects_id_key"))

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("trigger", sa.Text, nullable=False, server_default="schedule"),
    sa.Column("status", sa.Text, nullable=False, server_default="running"),
    sa.Column("fence", sa.BigInteger, nullable=True),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pulled", sa.Integer, nullable=False, server_default="0"),
    sa.Column("written", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dead_lettered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cursor_before", CleanText(), nullable=True),
    sa.Column("cursor_after", CleanText(), nullable=True),
    sa.Column("error", CleanText(ERROR_CHARS), nullable=True),
    sa.CheckConstraint(
        "status IN ('running', 'succeeded', 'failed', 'stopped')", name="runs_status_known"
    ),
)
sa.Index("runs_by_flow_started", runs.c.flow, runs.c.started_at)
# Added in 0002: the token of the Redis lock the run holds, so its last task can release it.
runs.append_column(sa.Column("lock_token", sa.Text, nullable=True))
runs.append_column(sa.Column("pull_done", sa.Boolean, nullable=False, server_default="false"))
# Added in 0002: the mapped payload last written, for rules on changes and two-way echoes.
id_map.append_column(sa.Column("payload", JSONB, nullable=True))
# Added in 0005: when the source version in the link was read (a later read wins).
id_map.append_column(sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column(
        "run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("source_id", OutsideId(), nullable=False),
    sa.Column("record", JSONB, nullable=False),
    sa.Column("reason", CleanText(REASON_CHARS), nullable=False),
    sa.Column("error_class", sa.Text, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("dead_letters_open", dead_letters.c.flow, dead_letters.c.resolved_at)
# Added in 0006: when the letter's failure was last seen (a replay that fails again, a page
# redelivered), so a replay knows whether the cause is fixed.
dead_letters.append_column(
    sa.Column(
        "last_seen_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.now(),
    )
)

# Added in 0007: a letter the operator discarded (syncctl dlq discard): who and why; its
# resolved_at is when. Kept, never deleted: the record and its reason stay readable.
dead_letters.append_column(sa.Column("discarded_by", sa.Text, nullable=True))
dead_letters.append_column(sa.Column("discard_reason", sa.Text, nullable=True))

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("cursor_value", CleanText(), nullable=True),
    sa.Column("next_token", CleanText(), nullable=True),
    sa.Column("records", JSONB, nullable=False),
    sa.Column("plan", JSONB, nullable=True),  # write requests planned by the transform step
    sa.Column("status", sa.Text, nullable=False, server_default="pulled"),
    sa.Column("written", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dead_lettered", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("run_id", "seq", name="pages_run_seq"),
    sa.CheckConstraint(
        "status IN ('pulled', 'planned', 'done', 'committed')", name="pages_status_known"
    ),
)
# Added in 0005: when the page was read from the source (before the read call began).
pages.append_column(sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))

directory_users = sa.Table(
    "directory_users",
    metadata,
    sa.Column("system", sa.Text, primary_key=True),
    sa.Column("user_id", OutsideId(), primary_key=True),
    sa.Column("employee_no", OutsideId(), nullable=True),
    sa.Column("email", OutsideId(), nullable=True),
    sa.Column("mobile", OutsideId(), nullable=True),
    sa.Column("name", CleanText(), nullable=True),
    sa.Column(
        "refreshed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
sa.Index("directory_by_employee_no", directory_users.c.system, directory_users.c.employee_no)
sa.Index("directory_by_email", directory_users.c.system, directory_users.c.email)
sa.Index("directory_by_mobile", directory_users.c.system, directory_users.c.mobile)

quota_usage = sa.Table(
    "quota_usage",
    metadata,
    sa.Column("vendor", sa.Text, primary_key=True),
    sa.Column("app", sa.Text, primary_key=True),
    sa.Column("api", sa.Text, primary_key=True),
    sa.Column("period", sa.Text, primary_key=True),  # "2026-11" for monthly quotas
    sa.Column("used", sa.BigInteger, nullable=False, server_default="0"),
)

# Added in 0003: webhook deliveries, once per (connector, vendor event id), and refusals counted.
inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("vendor", sa.Text, nullable=False),
    sa.Column("event_id", OutsideId(), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("occurred_at", CleanText(), nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", CleanText(ERROR_CHARS), nullable=True),
    sa.Column(
        "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
    # Added in 0010: the task handling the row and until when (pipeline/events, leases).
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("connector", "event_id", name="inbound_events_once"),
    sa.CheckConstraint(
        "status IN ('queued', 'done', 'ignored', 'failed')", name="inbound_events_status_known"
    ),
)
sa.Index("inbound_events_by_status", inbound_events.c.status, inbound_events.c.received_at)

webhook_refusals = sa.Table(
    "webhook_refusals",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),  # bad_signature, stale, replay, malformed
    sa.Column("count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Added in 0016: refusals per connector, reason and 10-second bucket (`webhook_refusals` holds
# the totals): the `webhook_refusals` alert counts those inside its window; buckets older than
# a day are pruned by the alert evaluation.
webhook_refusal_counts = sa.Table(
    "webhook_refusal_counts",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False, server_default="0"),
)
sa.Index("webhook_refusal_counts_by_bucket", webhook_refusal_counts.c.bucket)

# Added in 0008: the running services and the configuration each loaded (sync_pipeline/
# presence.py); a row unseen for a few heartbeats is a service that died without saying so.
service_instances = sa.Table(
    "service_instances",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # worker, beat, webhooks
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("config_digest", sa.Text, nullable=False),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Added in 0011: leases. A step working on a page holds the page's lease, and a pull reading a
# run's pages holds the run's, renewed by a heartbeat; a released lease keeps its last moment
# (lease_until, owner NULL), so it also says when the work last moved. `swept_at`: when the
# sweeper last sent a stalled run's work again (sync_pipeline/pipeline/sweeper.py).
for _table in (pages, runs):
    _table.append_column(sa.Column("owner", sa.Text, nullable=True))
    _table.append_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
runs.append_column(sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True))
sa.Index("runs_running", runs.c.status, postgresql_where=sa.text("status = 'running'"))

# Added in 0011: work asked for from the command line (a manual run, a replay), recorded
# before its task is sent, so the sweeper can send again a task the broker lost.
work_requests = sa.Table(
    "work_requests",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # run, replay, resync
    sa.Column("flow", sa.Text, nullable=True),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("args", JSONB, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False, unique=True),
    sa.Column("status", sa.Text, nullable=False, server_default="requested"),
    sa.Column("run_id", sa.BigInteger, nullable=True),
    sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "status IN ('requested', 'started', 'turned_away')", name="work_requests_status_known"
    ),
)
sa.Index(
    "work_requests_waiting",
    work_requests.c.sent_at,
    postgresql_where=sa.text("status = 'requested'"),
)


# Added in 0012: full resyncs (`syncctl resync`), each with its own checkpoint: the read window
# it was asked for, the token of the next page to read, and what it has done so far. A resync
# never moves the flow's cursor nor takes its fence; its lease says a worker is at it.
resyncs = sa.Table(
    "resyncs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("since", CleanText(), nullable=True),  # None: from the beginning
    sa.Column("until", CleanText(), nullable=False),  # the signpost: the moment it was asked
    sa.Column("dry_run", sa.Boolean, nullable=False, server_default="false"),
    sa.Column("status", sa.Text, nullable=False, server_default="running"),
    sa.Column("page_token", CleanText(), nullable=True),  # the next page; None: the first
    sa.Column("position", CleanText(), nullable=True),  # the last cursor value handled
    sa.Column("first_position", CleanText(), nullable=True),  # the first one
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("written", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dead_lettered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("would_create", sa.Integer, nullable=False, server_default="0"),
    sa.Column("would_update", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_id", sa.BigInteger, nullable=True),
    sa.Column("requested_by", CleanText(), nullable=False),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("error", CleanText(ERROR_CHARS), nullable=True),
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "status IN ('running', 'succeeded', 'failed', 'stopped')", name="resyncs_status_known"
    ),
)
sa.Index("resyncs_by_flow", resyncs.c.flow, resyncs.c.id)


# Added in 0012: an operator's pause of a flow (`syncctl flow pause|resume`), with who, why and
# when: Beat's pulls, `syncctl run`, events (they wait, queued) and resyncs honour it.
flow_controls = sa.Table(
    "flow_controls",
    metadata,
    sa.Column("flow", sa.Text, primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("by", CleanText(), nullable=False),
    sa.Column("reason", CleanText(REASON_CHARS), nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
# Added in 0012: who made a run that an operator made by hand (`syncctl cursor set`).
runs.append_column(sa.Column("by", CleanText(), nullable=True))


# Added in 0013: alerts (pipeline/alerts.py): one row per (rule, subject), its state, since
# when, and whether its firing and its resolution were delivered. `epoch` counts the times it
# started firing: with the state it makes each notice's effect key, so a notice is sent once.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("rule", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),  # a flow or a vendor
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("detail", CleanText(ERROR_CHARS), nullable=False, server_default=""),
    sa.Column("notified_firing", sa.Boolean, nullable=False, server_default="false"),
    sa.Column("notified_resolved", sa.Boolean, nullable=False, server_default="false"),
    sa.Column(
        "evaluated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint(
        "state IN ('ok', 'pending', 'firing', 'resolved')", name="alerts_state_known"
    ),
)


# Added in 0014: reconciliations (`syncctl reconcile`, pipeline/reconcile.py): one row each,
# what it compared, the drift it found (missing, extra and different objects at the target,
# kept whole in `drift`) and, with `repair`, how many it repaired.
reconciles = sa.Table(
    "reconciles",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("flow", sa.Text, nullable=False),
    sa.Column("repair", sa.Boolean, nullable=False, server_default="false"),
    sa.Column("status", sa.Text, nullable=False, server_default="running"),
    sa.Column("requested_by", CleanText(), nullable=False),
    sa.Column("checked", sa.Integer, nullable=False, server_default="0"),
    sa.Column("listed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("missing", sa.Integer, nullable=False, server_default="0"),
    sa.Column("extra", sa.Integer, nullable=False, server_default="0"),
    sa.Column("different", sa.Integer, nullable=False, server_default="0"),
    sa.Column("repaired", sa.Integer, nullable=False, server_default="0"),
    sa.Column("drift", JSONB, nullable=False, server_default="[]"),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("error", CleanText(ERROR_CHARS), nullable=True),
    # The lease of the worker at it (pipeline/leases.py); lease_until also says when it last
    # moved (the sweeper re-drives one whose worker died, or whose task was lost).
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "status IN ('running', 'succeeded', 'failed')", name="reconciles_status_known"
    ),
)
sa.Index("reconciles_by_flow", reconciles.c.flow, reconciles.c.id)
# One reconciliation of a flow running at a time (state/reconciles.start).
sa.Index(
    "reconciles_one_running",
    reconciles.c.flow,
    unique=True,
    postgresql_where=reconciles.c.status == "running",
)
# Added in 0017: the newest refresh token of each declarative connector whose OAuth2 provider
# rotates them (state/refresh_tokens.py), sealed (Fernet) under a key derived from the
# connector's client secret: the table never holds a token in the clear.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column(
        "stored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
# Added in 0018: the liveness of each connector's no-public-URL event connection (`syncctl
# events connect`): alive since when, the last frame seen (pings included), and how many
# outages it had.
event_connections = sa.Table(
    "event_connections",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),
    sa.Column("alive", sa.Boolean, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("detail", CleanText(ERROR_CHARS), nullable=False, server_default=""),
)
