"""Beat's schedule: a pull entry per enabled flow that has a schedule, and none for a
disabled flow, whatever its trigger says."""

from __future__ import annotations

from sync_pipeline.config.loader import load_config
from sync_pipeline.pipeline import leases, sweeper
from tests.unit.config.test_examples import CONFIG_DIR
from workers.beat import SWEEPS, flow_schedule


def test_given_the_shipped_flows_beat_schedules_only_the_enabled_ones_with_a_schedule() -> None:
    config = load_config(CONFIG_DIR, environment=False)

    entries = flow_schedule(config.flows.values())

    assert sorted(entries) == sorted(
        f"pull {f.name}"
        for f in config.flows.values()
        if f.enabled and (f.trigger.interval_s or f.trigger.cron)
    )
    assert "pull approvals_to_dingtalk_todos" not in entries  # disabled, with a cron


def test_beat_runs_the_sweeper_of_unfinished_work_every_30_s_on_the_admin_queue() -> None:
    [entry] = [e for e in SWEEPS.values() if e["task"] == sweeper.SWEEP_TASK]

    assert entry["schedule"] == sweeper.SWEEP_EVERY_S == 30.0
    assert entry["options"]["queue"] == "admin"


def test_a_dead_workers_work_is_sent_again_within_90_s_of_its_death_by_default() -> None:
    """A heartbeat renews a lease three times in its life; the lease runs out LEASE_S after
    the last beat, and the next sweep comes within SWEEP_EVERY_S."""
    assert leases.LEASE_S + sweeper.SWEEP_EVERY_S == 90.0
