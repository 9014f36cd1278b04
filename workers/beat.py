"""Celery Beat's schedule: one `pull.start` entry per enabled flow, from config/flows.

Run exactly one Beat. A second Beat (an old deploy's, say) would only enqueue duplicate
pulls, which the per-flow lock turns away; it never doubles an effect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from celery.beat import PersistentScheduler
from celery.schedules import crontab

from sync_pipeline.config.alerts import AlertsConfig
from sync_pipeline.config.connector import Vendor
from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import Config, load_config
from sync_pipeline.dispatch import RECONCILE_TASK
from sync_pipeline.errors import ConfigError
from sync_pipeline.pipeline import alerts, matrix_sync, sweeper
from sync_pipeline.presence import Presence
from sync_pipeline.settings import load_settings
from sync_pipeline.webhooks.sweep import SWEEP_EVERY_S, SWEEP_TASK

log = logging.getLogger(__name__)


def flow_schedule(flows: Iterable[Flow]) -> dict[str, dict[str, Any]]:
    """Beat entries for the enabled flows that have a schedule: a disabled flow is never
    scheduled (only `syncctl run FLOW --even-if-disabled` runs it)."""
    entries: dict[str, dict[str, Any]] = {}
    for flow in flows:
        if not flow.enabled:
            continue
        if flow.trigger.cron:
            minute, hour, day, month, weekday = flow.trigger.cron.split()
            schedule: Any = crontab(minute, hour, weekday, day, month)
        elif flow.trigger.interval_s:
            schedule = float(flow.trigger.interval_s)
        else:
            continue  # webhook-only flow
        entries[f"pull {flow.name}"] = {
            "task": "pull.start",
            "schedule": schedule,
            "args": (flow.name, "schedule"),
            "options": {"queue": "pull"},
        }
    return entries


def reconcile_schedule(config: Config) -> dict[str, dict[str, Any]]:
    """A reconcile entry per enabled flow whose target can be read back and whose
    `reconcile:` (nightly by default) has a schedule (pipeline/reconcile.py)."""
    entries: dict[str, dict[str, Any]] = {}
    for flow in config.enabled_flows():
        how = config.reconcile_of(flow)
        if how is None or how.schedule is None:
            continue
        minute, hour, day, month, weekday = how.schedule.split()
        entries[f"reconcile {flow.name}"] = {
            "task": RECONCILE_TASK,
            "schedule": crontab(minute, hour, weekday, day, month),
            "args": (None, flow.name),
            "options": {"queue": "admin"},
        }
    return entries


# Inbound events recorded while the broker was down get their task (sync_pipeline/webhooks);
# the work of workers that died, and requests the broker lost, are sent again (pipeline/sweeper).
SWEEPS: dict[str, dict[str, Any]] = {
    "sweep inbound events": {
        "task": SWEEP_TASK,
        "schedule": SWEEP_EVERY_S,
        "options": {"queue": "admin"},
    },
    "sweep unfinished work": {
        "task": sweeper.SWEEP_TASK,
        "schedule": sweeper.SWEEP_EVERY_S,
        "options": {"queue": "admin", "expires": sweeper.SWEEP_EVERY_S},
    },
}


def alert_schedule(config: AlertsConfig) -> dict[str, dict[str, Any]]:
    """The alert evaluation (pipeline/alerts.py) every `evaluate_every_s`, when any rule is
    configured; a tick that would start after the next one is due expires instead."""
    if not config.all_rules:
        return {}
    every = float(config.evaluate_every_s)
    return {
        "evaluate alerts": {
            "task": alerts.EVALUATE_TASK,
            "schedule": every,
            "options": {"queue": "admin", "expires": every},
        }
    }


def matrix_schedule(config: Config) -> dict[str, dict[str, Any]]:
    """A /sync read (pipeline/matrix_sync.py) every SYNC_EVERY_S for each Matrix connector an
    enabled flow writes to: how decisions made in its rooms are found (Matrix calls no one)."""
    names = sorted(
        {
            flow.target.connector
            for flow in config.flows.values()
            if flow.enabled and config.connectors[flow.target.connector].vendor is Vendor.MATRIX
        }
    )
    every = matrix_sync.SYNC_EVERY_S
    return {
        f"matrix sync {name}": {
            "task": matrix_sync.SYNC_TASK,
            "schedule": every,
            "args": (name,),
            "options": {"queue": "events", "expires": every},
        }
        for name in names
    }


class FlowScheduler(PersistentScheduler):
    """The persistent scheduler with the flows' entries merged in at start.

    A flow that has never been pulled by this Beat is due at once rather than one interval
    after Beat starts: a new deployment (or a flow just enabled) syncs straight away. The
    schedule file keeps each entry's last run, so a restart does not pull everything again.
    While it runs, Beat's presence records the configuration it scheduled (presence.py).
    """

    def setup_schedule(self) -> None:
        config = _flows_or_exit()
        self._presence = Presence(load_settings().urls()[1], "beat", config.digest)
        self._presence.start()
        flows = flow_schedule(config.flows.values())
        ticks = {
            **SWEEPS,
            **alert_schedule(config.alerts),
            **reconcile_schedule(config),
            **matrix_schedule(config),
        }
        self.app.conf.beat_schedule = {**self.app.conf.beat_schedule, **ticks, **flows}
        super().setup_schedule()
        for name in flows:
            entry = self.schedule.get(name)
            if entry is not None and entry.total_run_count == 0:
                entry.last_run_at = NEVER
        self.sync()

    def close(self) -> None:
        super().close()
        presence: Presence | None = getattr(self, "_presence", None)
        if presence is not None:
            presence.stop()


NEVER = datetime(2000, 1, 1, tzinfo=UTC)


def _flows_or_exit() -> Config:
    """The flows, without any secret (Beat only enqueues by name); an invalid config is one
    log line per problem and exit code 2, not Celery's two tracebacks of the scheduler."""
    try:
        return load_config(load_settings().config_dir, environment=False)
    except ConfigError as exc:
        problems = str(exc).splitlines()
    for line in problems:
        log.error("%s", line)
    raise SystemExit(2)
