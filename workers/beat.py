"""Celery Beat's schedule: one `pull.start` entry per enabled flow, from config/flows.

Run exactly one Beat. A second Beat (an old deploy's, say) would only enqueue duplicate
pulls, which the per-flow lock turns away; it never doubles an effect.
"""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler
from celery.schedules import crontab

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import load_config
from sync_pipeline.settings import load_settings


def flow_schedule(flows: list[Flow]) -> dict[str, dict[str, Any]]:
    """Beat entries for the flows that have a schedule."""
    entries: dict[str, dict[str, Any]] = {}
    for flow in flows:
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


class FlowScheduler(PersistentScheduler):
    """The persistent scheduler with the flows' entries merged in at start."""

    def setup_schedule(self) -> None:
        config = load_config(load_settings().config_dir)
        self.app.conf.beat_schedule = {
            **self.app.conf.beat_schedule,
            **flow_schedule(list(config.enabled_flows())),
        }
        super().setup_schedule()
