"""`syncctl sandbox seed`: one deterministic world, seeded into every emulator.

Seeding replaces: each platform's emulated objects are deleted first, then rebuilt from
`World(seed)`, so the same seed gives the same objects however often it runs. The ledger,
tokens, faults, settings and credentials stay: they are the sandbox's history, not the world.
Approvals stream from the world's generator in batches, so a million never sit in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.registry import DEFAULT_PORT_BASE, load_registry, port_for
from sync_pipeline.devtools.sandbox.world import World

log = logging.getLogger(__name__)

DEFAULT_SEED = 1
DEFAULT_APPROVALS = 1000
DEFAULT_CHECKIN_DAYS = 30
DEFAULT_PROGRESS_PER_PROJECT = 10


def seed_all(
    store: SandboxStore,
    *,
    seed: int = DEFAULT_SEED,
    approvals: int = DEFAULT_APPROVALS,
    checkin_days: int = DEFAULT_CHECKIN_DAYS,
    progress_per_project: int = DEFAULT_PROGRESS_PER_PROJECT,
    emulators: Mapping[str, Emulator] | None = None,
) -> dict[str, dict[str, int]]:
    """Seed every emulator from `World(seed)`; returns counts per platform and kind."""
    if min(approvals, checkin_days, progress_per_project) < 0:
        raise ValueError("approvals, checkin_days and progress_per_project must be >= 0")
    if emulators is None:
        classes = load_registry().classes
        emulators = {
            platform: cls(store, f"http://127.0.0.1:{port_for(platform, DEFAULT_PORT_BASE)}")
            for platform, cls in classes.items()
        }
    world = World(seed)
    # The Emulator.seed signature has no room for it; emulators that keep progress records
    # read it from their settings.
    for platform in emulators:
        store.set_setting(platform, "progress_per_project", str(progress_per_project))
    counts: dict[str, dict[str, int]] = {}
    for platform, emulator in emulators.items():
        started = time.monotonic()
        with store.write() as conn:
            conn.execute("DELETE FROM objects WHERE platform = ?", (platform,))
        counts[platform] = emulator.seed(world, approvals, checkin_days)
        log.info("seeded %s in %.1f s: %s", platform, time.monotonic() - started, counts[platform])
    store.set_setting(
        "sandbox",
        "seeded",
        f"seed={seed} approvals={approvals} checkin_days={checkin_days}"
        f" progress_per_project={progress_per_project}",
    )
    return counts
