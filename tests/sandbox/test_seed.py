"""`seed_all`: one deterministic world in every registered emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.registry import load_registry
from sync_pipeline.devtools.sandbox.seed import seed_all
from sync_pipeline.devtools.sandbox.world import World

APPROVAL_PLATFORMS = ("oa", "wecom", "dingtalk", "feishu")


def objects(store: SandboxStore) -> list[tuple[str, str, str, str]]:
    """Every emulated object; timestamps left out, as they default to the time of writing."""
    rows = store.conn().execute(
        "SELECT platform, kind, id, body FROM objects ORDER BY platform, kind, id"
    )
    return [tuple(row) for row in rows]


def seeded(
    path: Path, seed: int = 5, approvals: int = 10, progress_per_project: int = 10
) -> SandboxStore:
    store = SandboxStore(path)
    seed_all(
        store,
        seed=seed,
        approvals=approvals,
        checkin_days=3,
        progress_per_project=progress_per_project,
    )
    return store


def test_reseeding_with_the_same_seed_changes_nothing(tmp_path: Path) -> None:
    store = seeded(tmp_path / "s.db")
    before = objects(store)

    seed_all(store, seed=5, approvals=10, checkin_days=3)

    assert objects(store) == before


def test_the_same_seed_gives_the_same_oa_in_another_store(tmp_path: Path) -> None:
    one = seeded(tmp_path / "one.db")
    two = seeded(tmp_path / "two.db")

    assert [r for r in objects(one) if r[0] == "oa"] == [r for r in objects(two) if r[0] == "oa"]


def test_another_seed_gives_another_world(tmp_path: Path) -> None:
    one = seeded(tmp_path / "one.db")
    two = seeded(tmp_path / "two.db", seed=6)

    assert [r for r in objects(one) if r[0] == "oa"] != [r for r in objects(two) if r[0] == "oa"]


def test_reseeding_replaces_the_previous_world(tmp_path: Path) -> None:
    store = seeded(tmp_path / "s.db", approvals=20)

    seed_all(store, seed=5, approvals=10, checkin_days=3)

    fresh = seeded(tmp_path / "fresh.db")
    assert [r[:3] for r in objects(store)] == [r[:3] for r in objects(fresh)]


def test_ten_approvals_land_on_every_platform_with_approvals(tmp_path: Path) -> None:
    counts = seed_all(SandboxStore(tmp_path / "s.db"), approvals=10, checkin_days=1)

    for platform in APPROVAL_PLATFORMS:
        if platform in counts:
            kinds = counts[platform].items()
            approvals = [n for kind, n in kinds if "approval" in kind or "instance" in kind]
            assert approvals == [10], (platform, counts[platform])


def test_every_registered_platform_is_seeded(tmp_path: Path) -> None:
    counts = seed_all(SandboxStore(tmp_path / "s.db"), approvals=10, checkin_days=1)

    assert set(counts) == set(load_registry().classes)


def test_the_same_people_are_on_every_platform(tmp_path: Path) -> None:
    store = seeded(tmp_path / "s.db")
    world = World(5)

    for platform in load_registry().classes:
        # Each vendor keys people its own way (Agora Chat users have no email, only a name).
        bodies = " ".join(r[3] for r in objects(store) if r[0] == platform).lower()
        missing = [
            p.employee_no
            for p in world.people
            if p.email not in bodies and p.employee_no.lower() not in bodies
        ]
        assert missing == [], platform


def test_progress_per_project_reaches_the_oa(tmp_path: Path) -> None:
    store = seeded(tmp_path / "s.db", progress_per_project=4)

    assert store.count("oa", "progress") == 4 * len(World(5).projects)


def test_negative_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        seed_all(SandboxStore(tmp_path / "s.db"), approvals=-1)
